//! REST JSON shapes (being written).
