//! The transports a request or an exchange travels on: one vocabulary for every front end
//! (native, DNS), the native client and the recursor's upstream exchanges (hickory's
//! `xfer::Protocol`). It lives in `model` because every layer above names it and none of
//! them owns it: the metric labels and the HS_SITE interface numbers are both here.

use crate::model::structured::interface;

/// How a request arrived, or how an exchange reaches a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// The `proto` label of the native front end's metrics (`udp`, `tcp`).
    pub fn label(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }

    /// The protocol number of an HS_SITE interface on this transport.
    pub fn interface_protocol(self) -> u8 {
        match self {
            Transport::Udp => interface::UDP,
            Transport::Tcp => interface::TCP,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_interface_numbers() {
        assert_eq!(Transport::Udp.label(), "udp");
        assert_eq!(Transport::Tcp.label(), "tcp");
        assert_eq!(Transport::Udp.interface_protocol(), interface::UDP);
        assert_eq!(Transport::Tcp.interface_protocol(), interface::TCP);
    }
}
