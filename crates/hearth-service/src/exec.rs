//! Running a command in a workstation to its end, its output collected (bounded by
//! `limits.max_exec_output_bytes`, its time by `limits.max_exec_timeout_secs`).

use std::sync::Arc;

use hearth_proto::api::{ExecRequest, ExecResult};
use hearth_proto::control::{validate_env, ExecSpec};

use crate::error::{agent_error, Error};
use crate::principal::{Principal, Scope};
use crate::sharing::Level;
use crate::Service;

impl Service {
    pub async fn exec(self: &Arc<Self>, who: &Principal, id: &str, req: ExecRequest) -> Result<ExecResult, Error> {
        who.may(Scope::Write)?;
        let l = &self.config.limits;
        let timeout = req.timeout_secs.unwrap_or(self.config.defaults.exec_timeout_secs);
        if timeout == 0 || timeout > l.max_exec_timeout_secs {
            return Err(Error::invalid("timeout_secs", format!("must be 1-{}", l.max_exec_timeout_secs)));
        }
        let spec = ExecSpec {
            argv: req.argv,
            env: req.env,
            cwd: req.cwd,
            user: Some(req.user.unwrap_or_else(|| self.config.defaults.user.clone())),
            timeout_secs: Some(timeout),
            max_output_bytes: Some(l.max_exec_output_bytes),
            stdin: false,
        };
        // env first, so its faults are named as its own; what is left of the spec's checks is argv's.
        validate_env(&spec.env).map_err(|m| Error::invalid("env", m))?;
        spec.validate().map_err(|m| Error::invalid("argv", m))?;
        let stdin = req.stdin;
        let (who, id) = (who.clone(), id.to_string());
        self.run(move |s| {
            let agent = s.agent(&who, &id, Level::Use)?;
            let _slot = s.exec_slot(&who)?;
            let _in_use = s.activity.using(&id);
            s.audit(&who.user, "exec", &id, &format!("as {}: {}", spec.user.as_deref().unwrap_or_default(), spec.argv.join(" ")));
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let exit = match stdin {
                Some(input) => agent.exec_io(spec, Some(Box::new(std::io::Cursor::new(input.into_bytes()))), &mut out, &mut err),
                None => agent.exec(spec, &mut out, &mut err),
            };
            let exit = exit.map_err(|e| match e {
                // The command could not be run: its program is missing or not runnable.
                hearth_exec::ExecError::Refused { kind: hearth_exec::ErrorKind::Failed | hearth_exec::ErrorKind::NotFound, message } => Error::invalid("argv", message),
                e => agent_error(e),
            })?;
            Ok(ExecResult {
                exit_code: exit.code,
                signal: exit.signal,
                timed_out: exit.timed_out,
                truncated: exit.truncated,
                stdout: String::from_utf8_lossy(&out).into_owned(),
                stderr: String::from_utf8_lossy(&err).into_owned(),
            })
        })
        .await
    }
}
