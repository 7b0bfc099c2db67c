//! Workstation VMM exits, as they happen. Every workstation the server boots, or finds running
//! when it starts, has its Firecracker watched through a pidfd on the async runtime; when one
//! exits, that workstation's record is brought up to date at once (`Service::refresh`: a VMM
//! that died on its own becomes crashed, with an event). So the record in the store is the
//! workstation's state and listing reads the store alone: no per-row look at the processes,
//! which cost ~0.5 ms a workstation in the box and would make a list of thousands slow.
//!
//! A stop the server asked for fires the watch too; its refresh finds the record already
//! stopped and changes nothing. Must not: decide anything itself (the runtime's record and
//! the store are the truth; this only says when to look).

use std::sync::Mutex;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc;

use crate::backend::Backend;

/// Exits waiting to be recorded. A full queue holds the watches back (they wait to send), not
/// the exits.
const QUEUE: usize = 256;

/// Starts watches and queues the exits they see (`Service::record_exits` records them).
pub struct Exits {
    tx: mpsc::Sender<String>,
    rx: Mutex<Option<mpsc::Receiver<String>>>,
}

impl Default for Exits {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Exits { tx, rx: Mutex::new(Some(rx)) }
    }
}

impl Exits {
    /// Watches workstation `id`'s VMM, if it runs. Call within the server's async runtime
    /// (its blocking threads included); elsewhere (a tool with no runtime) this does nothing.
    pub fn watch(&self, backend: &dyn Backend, id: &str) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let Some(fd) = backend.exit_fd(id) else { return };
        let id = id.to_string();
        let fd = match fd {
            Ok(fd) => fd,
            // It exited meanwhile: look now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let _ = self.tx.try_send(id);
                return;
            }
            Err(e) => return tracing::warn!(workstation = %id, "cannot watch its Firecracker ({e}); its state is checked when it is read alone"),
        };
        let tx = self.tx.clone();
        rt.spawn(async move {
            // SAFETY: the AsyncFd owns the descriptor (an OwnedFd) for all its life.
            match unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
                // A pidfd only ever becomes readable, once its process has exited.
                Ok(fd) => drop(fd.readable().await),
                Err(e) => return tracing::warn!(workstation = %id, "cannot watch its Firecracker ({e})"),
            }
            let _ = tx.send(id).await;
        });
    }
}

impl Exits {
    /// The exits the watches see, in the order they come; once (the first caller takes them).
    pub(crate) fn take(&self) -> Option<mpsc::Receiver<String>> {
        self.rx.lock().ok().and_then(|mut r| r.take())
    }
}
