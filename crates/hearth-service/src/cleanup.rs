//! The undo stack of an operation made of several steps (a create: directory and disk,
//! record, network). Each step that succeeds pushes how to undo it; if the operation ends
//! early (an error returned with `?`, a panic), the stack is dropped and the undos run in
//! reverse order, each one's failure logged and the rest still run. An operation that
//! succeeds calls [`Cleanup::dismiss`], and nothing is undone.
//!
//! Must not: decide whether an error is worth undoing for (every early end is).

type Undo<'a> = Box<dyn FnOnce() -> Result<(), String> + 'a>;

#[derive(Default)]
pub struct Cleanup<'a> {
    what: &'static str,
    steps: Vec<(&'static str, Undo<'a>)>,
}

impl<'a> Cleanup<'a> {
    /// An empty stack for the operation named `what` (said in the logs of its undos).
    pub fn new(what: &'static str) -> Cleanup<'a> {
        Cleanup { what, steps: Vec::new() }
    }

    /// Registers how to undo the step `step` that just succeeded.
    pub fn push<E: std::fmt::Display>(&mut self, step: &'static str, undo: impl FnOnce() -> Result<(), E> + 'a) {
        self.steps.push((step, Box::new(move || undo().map_err(|e| e.to_string()))));
    }

    /// The operation succeeded: keep what it made.
    pub fn dismiss(mut self) {
        self.steps.clear();
    }
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        while let Some((step, undo)) = self.steps.pop() {
            match undo() {
                Ok(()) => tracing::debug!(operation = self.what, step, "undone"),
                Err(e) => tracing::warn!(operation = self.what, step, "undoing it failed: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn op(log: &RefCell<Vec<&'static str>>, fail_at: Option<usize>) -> Result<(), String> {
        let mut undo = Cleanup::new("test");
        for (i, step) in ["dir", "record", "network"].into_iter().enumerate() {
            if fail_at == Some(i) {
                return Err(format!("{step} failed"));
            }
            log.borrow_mut().push(step);
            undo.push(step, move || {
                log.borrow_mut().push(match step {
                    "dir" => "-dir",
                    "record" => "-record",
                    _ => "-network",
                });
                if step == "record" {
                    Err("the database is gone")
                } else {
                    Ok(())
                }
            });
        }
        undo.dismiss();
        Ok(())
    }

    #[test]
    fn steps_are_undone_in_reverse_on_failure_and_kept_on_success() {
        let log = RefCell::new(Vec::new());
        assert!(op(&log, Some(2)).is_err());
        // The record's undo failed; the directory's still ran.
        assert_eq!(*log.borrow(), ["dir", "record", "-record", "-dir"]);
        log.borrow_mut().clear();
        assert!(op(&log, Some(0)).is_err());
        assert!(log.borrow().is_empty());
        op(&log, None).unwrap();
        assert_eq!(*log.borrow(), ["dir", "record", "network"]);
    }
}
