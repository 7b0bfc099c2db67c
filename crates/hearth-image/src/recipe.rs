//! Root filesystem recipes: a directory with `recipe.toml` and the files it names.
//!
//! The two recipes hearth ships (the datascience workstation and the box) are embedded in the
//! binary, so `hearth image build` works without a source checkout. A recipe is loaded whole
//! into memory and validated before anything runs: a missing file or a bad name fails here,
//! naming the field, not halfway through a build.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::hash::InputHash;
use crate::ImageError;

/// Limits on what a recipe may ask for.
const MAX_PACKAGES: usize = 1000;
const MAX_FILE_BYTES: u64 = 64 << 20;
const MAX_FILES: usize = 64;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeSpec {
    pub name: String,
    /// Debian suite for mmdebstrap (the host's apt sources must carry it).
    pub suite: String,
    #[serde(default = "default_variant")]
    pub variant: String,
    #[serde(default)]
    pub packages: Vec<String>,
    /// A pinned pip requirements file; when set, a venv at /opt/venv gets it and comes
    /// first on PATH for every login.
    pub requirements: Option<String>,
    /// A shell script run inside the image after packages, user and venv.
    pub hook: Option<String>,
    /// A shell command run inside the finished image; the build fails if it fails.
    pub check: Option<String>,
    pub user: Option<UserSpec>,
    #[serde(default)]
    pub files: Vec<FileSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    pub name: String,
    pub uid: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub source: String,
    pub dest: String,
    #[serde(default = "default_mode")]
    pub mode: String,
}

fn default_variant() -> String {
    "minbase".into()
}
fn default_mode() -> String {
    "0644".into()
}

/// A validated recipe with the contents of every file it names.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub spec: RecipeSpec,
    pub files: BTreeMap<String, Vec<u8>>,
    /// Where it came from, for messages.
    pub origin: String,
}

const DATASCIENCE: &[(&str, &[u8])] = &[
    ("recipe.toml", include_bytes!("../../../images/datascience/recipe.toml")),
    ("requirements.txt", include_bytes!("../../../images/datascience/requirements.txt")),
    ("hook.sh", include_bytes!("../../../images/datascience/hook.sh")),
];
const BOX: &[(&str, &[u8])] = &[("recipe.toml", include_bytes!("../../../images/box/recipe.toml")), ("init", include_bytes!("../../../images/box/init"))];

impl Recipe {
    /// The default workstation recipe, embedded at build time.
    pub fn datascience() -> Self {
        Self::embedded("embedded:datascience", DATASCIENCE)
    }

    /// The box's root filesystem recipe, embedded at build time.
    pub fn box_root() -> Self {
        Self::embedded("embedded:box", BOX)
    }

    fn embedded(origin: &str, files: &[(&str, &[u8])]) -> Self {
        let get = |n: &str| files.iter().find(|(f, _)| *f == n).map(|(_, b)| b.to_vec());
        Self::from_parts(origin, |n| Ok(get(n))).expect("embedded recipes are valid (tested)")
    }

    /// Loads `dir/recipe.toml` and every file it names.
    pub fn load_dir(dir: &Path) -> Result<Self, ImageError> {
        let origin = dir.display().to_string();
        Self::from_parts(&origin, |name| {
            let p = dir.join(name);
            match std::fs::metadata(&p) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(ImageError::io(format!("reading {}", p.display()), e)),
                Ok(md) if md.len() > MAX_FILE_BYTES => Err(recipe_err(&origin, name, format!("is {} bytes; at most {MAX_FILE_BYTES}", md.len()))),
                Ok(_) => std::fs::read(&p).map(Some).map_err(|e| ImageError::io(format!("reading {}", p.display()), e)),
            }
        })
    }

    fn from_parts(origin: &str, read: impl Fn(&str) -> Result<Option<Vec<u8>>, ImageError>) -> Result<Self, ImageError> {
        let toml_bytes = read("recipe.toml")?.ok_or_else(|| recipe_err(origin, "recipe.toml", "is missing".into()))?;
        let text = String::from_utf8(toml_bytes).map_err(|_| recipe_err(origin, "recipe.toml", "is not UTF-8".into()))?;
        let spec: RecipeSpec = toml::from_str(&text).map_err(|e| recipe_err(origin, "recipe.toml", e.to_string()))?;
        validate(origin, &spec)?;
        let mut files = BTreeMap::new();
        files.insert("recipe.toml".to_string(), text.into_bytes());
        let named =
            spec.requirements.iter().map(|r| ("requirements", r)).chain(spec.hook.iter().map(|h| ("hook", h))).chain(spec.files.iter().map(|f| ("files.source", &f.source)));
        for (field, name) in named {
            check_file_name(origin, field, name)?;
            let data = read(name)?.ok_or_else(|| recipe_err(origin, field, format!("names `{name}`, which is missing from the recipe")))?;
            files.insert(name.clone(), data);
        }
        if files.len() > MAX_FILES {
            return Err(recipe_err(origin, "files", format!("names {} files; at most {MAX_FILES}", files.len())));
        }
        Ok(Self { spec, files, origin: origin.to_string() })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn hash_into(&self, h: &mut InputHash) {
        for (name, data) in &self.files {
            h.bytes(&format!("recipe:{name}"), data);
        }
    }
}

fn recipe_err(origin: &str, field: &str, message: String) -> ImageError {
    ImageError::Recipe { recipe: origin.to_string(), field: field.to_string(), message }
}

fn is_name(s: &str, extra: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(c))
}

fn validate(origin: &str, spec: &RecipeSpec) -> Result<(), ImageError> {
    let bad = |field: &str, msg: String| Err(recipe_err(origin, field, msg));
    if !is_name(&spec.name, "-") {
        return bad("name", format!("`{}` must be 1-64 of a-z, 0-9 and -", spec.name));
    }
    if !is_name(&spec.suite, "-") {
        return bad("suite", format!("`{}` is not a Debian suite name", spec.suite));
    }
    if !["minbase", "essential", "apt", "required", "important", "standard"].contains(&spec.variant.as_str()) {
        return bad("variant", format!("`{}` is not an mmdebstrap variant", spec.variant));
    }
    if spec.packages.len() > MAX_PACKAGES {
        return bad("packages", format!("{} packages; at most {MAX_PACKAGES}", spec.packages.len()));
    }
    if let Some(p) = spec.packages.iter().find(|p| !is_name(p, "+-.") || p.starts_with(['-', '.', '+'])) {
        return bad("packages", format!("`{p}` is not a Debian package name"));
    }
    if let Some(u) = &spec.user {
        if !is_name(&u.name, "-_") || u.uid == 0 || u.uid >= 60000 {
            return bad("user", format!("`{}` uid {} must be a lowercase name with a uid in 1..60000", u.name, u.uid));
        }
    }
    for f in &spec.files {
        if !f.dest.starts_with('/') || f.dest.contains("..") {
            return bad("files.dest", format!("`{}` must be an absolute path without `..`", f.dest));
        }
        if u32::from_str_radix(&f.mode, 8).map_or(true, |m| m > 0o7777) {
            return bad("files.mode", format!("`{}` is not an octal file mode", f.mode));
        }
    }
    Ok(())
}

fn check_file_name(origin: &str, field: &str, name: &str) -> Result<(), ImageError> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(recipe_err(origin, field, format!("`{name}` must be a plain file name inside the recipe directory")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_recipes_load() {
        let ds = Recipe::datascience();
        assert_eq!(ds.name(), "datascience");
        assert!(ds.files.contains_key("requirements.txt"));
        assert_eq!(ds.spec.user.as_ref().unwrap().uid, 1000);
        assert_eq!(Recipe::box_root().spec.files[0].dest, "/init");
    }

    fn write_recipe(dir: &Path, toml: &str) {
        std::fs::write(dir.join("recipe.toml"), toml).unwrap();
    }

    #[test]
    fn missing_requirements_file_names_the_field() {
        let d = tempfile::tempdir().unwrap();
        write_recipe(d.path(), "name='x'\nsuite='bookworm'\nrequirements='requirements.txt'\n");
        let e = Recipe::load_dir(d.path()).unwrap_err().to_string();
        assert!(e.contains("requirements") && e.contains("missing"), "{e}");
    }

    #[test]
    fn bad_fields_are_named() {
        let d = tempfile::tempdir().unwrap();
        for (toml, field) in [
            ("name='X Y'\nsuite='bookworm'", "name"),
            ("name='x'\nsuite='bookworm'\npackages=['bash','--evil']", "packages"),
            ("name='x'\nsuite='bookworm'\nhook='../etc/passwd'", "hook"),
            ("name='x'\nsuite='bookworm'\nsurprise=1", "recipe.toml"),
            ("name='x'\nsuite='bookworm'\n[user]\nname='root'\nuid=0", "user"),
        ] {
            write_recipe(d.path(), toml);
            match Recipe::load_dir(d.path()) {
                Err(ImageError::Recipe { field: f, .. }) => assert_eq!(f, field, "{toml}"),
                other => panic!("{toml}: {other:?}"),
            }
        }
    }
}
