//! Long computations with Ctrl-C: the work runs on a worker thread with the
//! GIL released while the calling thread checks for signals.

use crate::py_err;
use pyo3::prelude::*;
use quantdepth::error::Error;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// Runs `work` on a worker thread with the GIL released; the calling thread
/// checks for signals (Ctrl-C) every 50 ms and sets the cancel flag on one.
/// Returns the work's result, or the signal's exception once the work has
/// stopped.
pub(crate) fn interruptible<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce(&AtomicBool) -> quantdepth::Result<T> + Send,
{
    match interruptible_parts(py, work) {
        (_, Some(sig)) => Err(sig),
        (out, None) => out.map_err(py_err),
    }
}

/// [`interruptible`]'s parts: the work's result and the signal's exception, if any.
pub(crate) fn interruptible_parts<T, F>(
    py: Python<'_>,
    work: F,
) -> (quantdepth::Result<T>, Option<PyErr>)
where
    T: Send,
    F: FnOnce(&AtomicBool) -> quantdepth::Result<T> + Send,
{
    let cancel = AtomicBool::new(false);
    py.detach(|| {
        std::thread::scope(|s| {
            let (tx, rx) = mpsc::channel();
            let cancel = &cancel;
            s.spawn(move || {
                let _ = tx.send(work(cancel));
            });
            let mut signal: Option<PyErr> = None;
            loop {
                match rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(out) => return (out, signal),
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if signal.is_none() {
                            if let Err(e) = Python::attach(|py| py.check_signals()) {
                                cancel.store(true, Ordering::SeqCst);
                                signal = Some(e);
                            }
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        return (
                            Err(Error::Numerical("the worker thread panicked".into())),
                            signal,
                        )
                    }
                }
            }
        })
    })
}
