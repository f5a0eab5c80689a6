//! Graceful shutdown: one signal every server and background task listens to.

use tokio::sync::watch;

/// The sending side, held by whoever decides to stop.
#[derive(Clone)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// A listener for the stop signal; cheap to clone into every task.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A trigger and its first listener.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once stopping has been asked for.
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        // An error means the trigger is gone, which also means stop.
        let _ = rx.wait_for(|stop| *stop).await;
    }
}
