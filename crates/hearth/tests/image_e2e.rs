//! Artifact builds through the CLI: the cache is reused, and bad recipes fail with the step
//! named while the cached artifacts stay as they were.

mod common;

use std::fs;

use common::{cache_dir, hearth, run, run_ok};

#[test]
fn a_second_build_reuses_every_artifact_and_says_so() {
    let data = tempfile::tempdir().unwrap();
    let (code, out, err) = run(hearth(data.path()).args(["image", "build"]));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!err.lines().any(|l| l.contains(": building ")), "something was rebuilt:\n{err}");
    for name in ["guest-kernel", "box-kernel", "firecracker", "box-rootfs", "rootfs/datascience", "rootfs-base/datascience"] {
        assert!(err.contains(&format!("{name}: cached ")), "{name} not reported cached:\n{err}");
    }
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert!(rows.len() >= 6 && rows.iter().all(|r| r.contains("cached")), "{out}");
    let ls: serde_json::Value = serde_json::from_str(&run_ok(hearth(data.path()).args(["image", "ls", "--json"]))).unwrap();
    let kinds: Vec<&str> = ls.as_array().unwrap().iter().map(|a| a["kind"].as_str().unwrap()).collect();
    for k in ["kernel", "rootfs", "rootfs-base", "firecracker", "linux-src"] {
        assert!(kinds.contains(&k), "{k} missing from image ls: {kinds:?}");
    }
}

/// A bad recipe: its name, recipe.toml, extra files, and what the error must say.
type BadRecipe = (&'static str, &'static str, &'static [(&'static str, &'static str)], &'static [&'static str]);

fn recipe(dir: &std::path::Path, toml: &str, files: &[(&str, &str)]) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("recipe.toml"), toml).unwrap();
    for (name, body) in files {
        fs::write(dir.join(name), body).unwrap();
    }
}

#[test]
fn bad_recipes_fail_at_the_named_step_and_leave_the_cache_alone() {
    let data = tempfile::tempdir().unwrap();
    let refs_path = cache_dir().join("refs.json");
    let refs_before = fs::read(&refs_path).expect("artifacts were built before the tests");
    let default_image = cache_dir().join(serde_json::from_slice::<serde_json::Value>(&refs_before).unwrap()["rootfs/datascience"].as_str().unwrap());
    let cases: [BadRecipe; 3] = [
        ("missing-req", "name='missing-req'\nsuite='bookworm'\nrequirements='requirements.txt'\n", &[], &["`requirements` names `requirements.txt`, which is missing"]),
        ("unknown-pkg", "name='unknown-pkg'\nsuite='bookworm'\npackages=['hearth-no-such-package']\n", &[], &["step `mmdebstrap` failed", "hearth-no-such-package"]),
        ("broken-hook", "name='broken-hook'\nsuite='bookworm'\nhook='hook.sh'\n", &[("hook.sh", "echo about to fail\nexit 3\n")], &["step `hook` failed", "about to fail"]),
    ];
    for (name, toml, files, expect) in cases {
        let dir = data.path().join(name);
        recipe(&dir, toml, files);
        let (code, out, err) = run(hearth(data.path()).args(["image", "build", "--recipe"]).arg(&dir));
        assert_ne!(code, 0, "{name} built:\n{out}\n{err}");
        for e in expect {
            assert!(err.contains(e), "{name}: `{e}` not in:\n{err}");
        }
        assert_eq!(fs::read(&refs_path).unwrap(), refs_before, "{name} changed refs.json");
        assert!(default_image.join("rootfs.ext4").is_file(), "{name} removed the cached image");
    }
}
