//! The CA certificates guests trust beyond their image's (`network.ca_certificates`; by
//! default the host's own extras): read once when the service starts, put into each guest's
//! certificate store at every boot, with pip and Python's `requests` pointed at that store.
//! Behind a TLS-intercepting proxy, a guest's `pip install` otherwise fails with
//! CERTIFICATE_VERIFY_FAILED while the same NAT path works.
//!
//! Must not: reach an agent that is not a guest's (the fake backend's agent runs on the host:
//! its service is given none).

use std::io::Cursor;
use std::path::Path;

use hearth_proto::control::ExecSpec;

use crate::error::Error;
use crate::Service;

/// Certificate files read at most, and the size of each.
const MAX_FILES: usize = 64;
const MAX_FILE_BYTES: u64 = 64 << 10;
const PEM_BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";

/// Run as root in the guest with the PEM bundle on stdin: one file per certificate in a
/// directory of its own (emptied first: a CA the host dropped is dropped here too), the
/// store rebuilt, pip and Python pointed at it.
const INSTALL: &str = r#"set -e
d=/usr/local/share/ca-certificates/hearth
rm -rf "$d"
mkdir -p "$d"
awk -v d="$d" '/-----BEGIN CERTIFICATE-----/ { n++; f = sprintf("%s/host-%02d.crt", d, n) } f { print > f }'
update-ca-certificates >/dev/null 2>&1
b=/etc/ssl/certs/ca-certificates.crt
printf '[global]\ncert = %s\n' "$b" > /etc/pip.conf
printf 'export REQUESTS_CA_BUNDLE=%s\nexport SSL_CERT_FILE=%s\n' "$b" "$b" > /etc/profile.d/hearth-ca.sh
ls "$d" | wc -l
"#;

/// The certificates (PEM) of `paths`: files, or directories whose `*.crt` files are, in
/// name order. Missing paths are skipped; files that hold no certificate are skipped with a
/// warning.
pub fn load(paths: &[String]) -> Vec<u8> {
    let mut files = Vec::new();
    for p in paths.iter().map(Path::new) {
        if p.is_dir() {
            let mut found: Vec<_> = std::fs::read_dir(p).into_iter().flatten().flatten().map(|e| e.path()).filter(|f| f.extension().is_some_and(|x| x == "crt")).collect();
            found.sort();
            files.extend(found);
        } else if p.is_file() {
            files.push(p.to_path_buf());
        }
    }
    let mut bundle = Vec::new();
    for f in files.iter().take(MAX_FILES) {
        match std::fs::metadata(f).map(|m| m.len()) {
            Ok(n) if n <= MAX_FILE_BYTES => {}
            _ => {
                tracing::warn!(file = %f.display(), "not given to guests: unreadable or over {MAX_FILE_BYTES} bytes");
                continue;
            }
        }
        match std::fs::read(f) {
            Ok(pem) if pem.windows(PEM_BEGIN.len()).any(|w| w == PEM_BEGIN) => {
                bundle.extend_from_slice(&pem);
                bundle.push(b'\n');
            }
            _ => tracing::warn!(file = %f.display(), "not given to guests: no PEM certificate in it"),
        }
    }
    if files.len() > MAX_FILES {
        tracing::warn!("only the first {MAX_FILES} CA certificate files are given to guests");
    }
    bundle
}

impl Service {
    /// Puts the extra CA certificates into workstation `id`'s store (nothing when there are
    /// none). Run after every boot: the host's set may have changed since the last.
    pub(crate) fn trust_cas(&self, id: &str) -> Result<(), Error> {
        if self.guest_cas.is_empty() {
            return Ok(());
        }
        let spec = ExecSpec { argv: vec!["sh".into(), "-c".into(), INSTALL.into()], stdin: true, timeout_secs: Some(60), ..ExecSpec::default() };
        let agent = self.backend.agent(id, crate::AGENT_TIMEOUT)?;
        let (exit, out, err) = agent_exec(agent, spec, self.guest_cas.clone())?;
        if exit.status() != 0 {
            return Err(Error::internal(format!("installing CA certificates in the guest exited {}: {}", exit.status(), String::from_utf8_lossy(&err).trim())));
        }
        tracing::debug!(workstation = id, certificates = %String::from_utf8_lossy(&out).trim(), "extra CA certificates trusted");
        Ok(())
    }
}

fn agent_exec(agent: hearth_exec::ExecClient<std::os::unix::net::UnixStream>, spec: ExecSpec, stdin: Vec<u8>) -> Result<(hearth_exec::ExecExit, Vec<u8>, Vec<u8>), Error> {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let exit = agent.exec_io(spec, Some(Box::new(Cursor::new(stdin))), &mut out, &mut err).map_err(crate::error::agent_error)?;
    Ok((exit, out, err))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn certificates_come_from_files_and_directories_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let cas = dir.path().join("cas");
        std::fs::create_dir(&cas).unwrap();
        std::fs::write(cas.join("b.crt"), PEM.replace("MIIB", "BBBB")).unwrap();
        std::fs::write(cas.join("a.crt"), PEM.replace("MIIB", "AAAA")).unwrap();
        std::fs::write(cas.join("notes.txt"), PEM).unwrap(); // not a .crt
        std::fs::write(cas.join("empty.crt"), "not a certificate").unwrap();
        let single = dir.path().join("one.pem");
        std::fs::write(&single, PEM.replace("MIIB", "CCCC")).unwrap();
        let paths = [cas.display().to_string(), single.display().to_string(), "/no/such/dir".into()];
        let bundle = String::from_utf8(load(&paths)).unwrap();
        let order: Vec<&str> = ["AAAA", "BBBB", "CCCC"].into_iter().filter(|k| bundle.contains(k)).collect();
        assert_eq!(order.len(), 3, "{bundle}");
        assert!(bundle.find("AAAA") < bundle.find("BBBB") && bundle.find("BBBB") < bundle.find("CCCC"), "in name order, directories first: {bundle}");
        assert_eq!(bundle.matches(PEM_BEGIN_STR).count(), 3, "the .txt and the non-certificate are left out: {bundle}");
        assert!(load(&[]).is_empty());
    }

    const PEM_BEGIN_STR: &str = "-----BEGIN CERTIFICATE-----";
}
