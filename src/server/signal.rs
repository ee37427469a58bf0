//! The signals a serving node acts on. SIGINT (Ctrl-C) and SIGTERM (systemd's stop, `docker
//! stop`) both end it gracefully: `serve` waits here, then shuts the node down.

/// Wait for SIGINT or (on Unix) SIGTERM.
pub async fn shutdown_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    // Without a SIGTERM handler, Ctrl-C still stops it; if even that cannot be installed
    // there is nothing to wait for.
    let _ = tokio::signal::ctrl_c().await;
}
