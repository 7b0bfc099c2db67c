//! Running one build step: a command whose output goes to the step's log file and whose
//! latest line shows on the step's progress bar. A failure names the step and quotes the
//! end of the log.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::ImageError;

/// Lines of log quoted in a failure.
const TAIL_LINES: usize = 12;
/// A sub-step marker a shell hook prints, so failures inside one long command
/// (mmdebstrap runs all recipe hooks) still name the step that failed.
pub const STEP_MARKER: &str = "hearth-step: ";

/// Progress output for a whole build: bars on a terminal, plain lines elsewhere (CI logs).
#[derive(Clone)]
pub struct Reporter {
    multi: MultiProgress,
    interactive: bool,
}

impl Reporter {
    pub fn new() -> Self {
        let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
        Self { multi: MultiProgress::new(), interactive }
    }

    /// A reporter that prints nothing (tests).
    pub fn hidden() -> Self {
        Self { multi: MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden()), interactive: true }
    }

    pub fn bar(&self, artifact: &str) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(ProgressStyle::with_template("{spinner:.cyan} {prefix:<18.bold} {elapsed:>4} {wide_msg}").expect("static template").tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏✔"));
        bar.set_prefix(artifact.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    }

    /// A line that stays: above the bars on a terminal, plainly on stderr elsewhere.
    pub fn line(&self, msg: &str) {
        if self.interactive {
            let _ = self.multi.println(msg);
        } else {
            eprintln!("{msg}");
        }
    }
}

impl Default for Reporter {
    fn default() -> Self {
        Self::new()
    }
}

/// One artifact's build: its log file and its bar.
pub struct Step {
    pub artifact: String,
    pub bar: ProgressBar,
    pub log: PathBuf,
}

impl Step {
    pub fn new(artifact: &str, reporter: &Reporter, log: &Path) -> Self {
        Self { artifact: artifact.into(), bar: reporter.bar(artifact), log: log.to_path_buf() }
    }

    /// Runs `cmd` as sub-step `name`, output appended to the log. Fails with the step's name
    /// (or the last marker it printed) and the log's tail.
    pub fn run(&self, name: &str, cmd: &mut Command) -> Result<(), ImageError> {
        let mut log = self.open_log()?;
        let _ = writeln!(log, "==> {name}: {cmd:?}");
        self.bar.set_message(name.to_string());
        let (reader, writer) = std::io::pipe().map_err(|e| ImageError::io("creating a pipe", e))?;
        let writer2 = writer.try_clone().map_err(|e| ImageError::io("cloning a pipe", e))?;
        cmd.stdin(Stdio::null()).stdout(Stdio::from(writer)).stderr(Stdio::from(writer2));
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd.spawn().map_err(|e| ImageError::io(format!("starting {program}"), e))?;
        // Drop our copies of the pipe's write end, or the reader never sees EOF.
        drop(std::mem::replace(cmd, Command::new("true")));

        let current = Arc::new(Mutex::new(name.to_string()));
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        let pump = {
            let (bar, current, tail) = (self.bar.clone(), current.clone(), tail.clone());
            let name = name.to_string();
            std::thread::spawn(move || pump_lines(reader, &mut log, &bar, &name, &current, &tail))
        };
        let status = child.wait().map_err(|e| ImageError::io(format!("waiting for {program}"), e))?;
        let _ = pump.join();
        if status.success() {
            return Ok(());
        }
        let step = current.lock().expect("no panics while held").clone();
        let tail = tail.lock().expect("no panics while held").iter().cloned().collect::<Vec<_>>().join("\n");
        Err(ImageError::StepFailed { artifact: self.artifact.clone(), step, status: status.to_string(), log: self.log.clone(), tail })
    }

    /// Notes a line in the log (and on the bar) without running anything.
    pub fn note(&self, msg: &str) {
        if let Ok(mut log) = self.open_log() {
            let _ = writeln!(log, "==> {msg}");
        }
        self.bar.set_message(msg.to_string());
    }

    fn open_log(&self) -> Result<File, ImageError> {
        OpenOptions::new().create(true).append(true).open(&self.log).map_err(|e| ImageError::io(format!("opening {}", self.log.display()), e))
    }

    pub fn finish(&self, msg: String) {
        self.bar.finish_with_message(msg);
    }
}

fn pump_lines(reader: std::io::PipeReader, log: &mut File, bar: &ProgressBar, name: &str, current: &Mutex<String>, tail: &Mutex<VecDeque<String>>) {
    let mut r = BufReader::new(reader);
    let mut buf = Vec::new();
    while let Ok(n) = r.read_until(b'\n', &mut buf) {
        if n == 0 {
            break;
        }
        let _ = log.write_all(&buf);
        let line = String::from_utf8_lossy(&buf).trim_end().to_string();
        buf.clear();
        if let Some(sub) = line.strip_prefix(STEP_MARKER) {
            *current.lock().expect("no panics while held") = sub.to_string();
        }
        let shown: String = line.chars().take(100).collect();
        bar.set_message(format!("{name}: {shown}"));
        let mut t = tail.lock().expect("no panics while held");
        if t.len() == TAIL_LINES {
            t.pop_front();
        }
        t.push_back(line);
    }
}

/// Quotes a string for a POSIX shell (mmdebstrap hooks are shell strings).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_the_last_marker_and_quote_the_log() {
        let d = tempfile::tempdir().unwrap();
        let step = Step::new("demo", &Reporter::hidden(), &d.path().join("demo.log"));
        step.run("ok", Command::new("sh").args(["-c", "echo fine"])).unwrap();
        let err = step.run("outer", Command::new("sh").args(["-c", "echo 'hearth-step: hook' >&2; echo boom; exit 3"])).unwrap_err();
        match &err {
            ImageError::StepFailed { artifact, step, tail, .. } => {
                assert_eq!((artifact.as_str(), step.as_str()), ("demo", "hook"));
                assert!(tail.ends_with("boom"), "{tail}");
            }
            other => panic!("unexpected {other:?}"),
        }
        let log = std::fs::read_to_string(d.path().join("demo.log")).unwrap();
        assert!(log.contains("fine") && log.contains("boom"));
    }

    #[test]
    fn shell_quote_survives_quotes() {
        let out = Command::new("sh").args(["-c", &format!("printf %s {}", shell_quote("it's $HOME"))]).output().unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "it's $HOME");
    }
}
