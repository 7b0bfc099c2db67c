//! The web UI as the server serves it: the page and its assets, bundled from `ui/` when this
//! crate is built (build.rs) and embedded in the binary, each with a gzipped copy. Owns what
//! the files are and their types; must not know HTTP (the server's `web` module serves them).

/// One file of the UI.
#[derive(Debug)]
pub struct Asset {
    /// Where it is served: `/` for the page, `/assets/<name>-<hash>.<ext>` for the rest
    /// (content-hashed names: cacheable for good).
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    /// The same, gzipped (for clients that accept it).
    pub gzip: &'static [u8],
}

impl Asset {
    /// Named by its content's hash (may be cached for good).
    pub fn immutable(&self) -> bool {
        self.path.starts_with("/assets/")
    }
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The asset served at `path`.
pub fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// The page (what every UI path answers with; the page's script picks the view).
pub fn page() -> &'static Asset {
    asset("/").expect("the UI build writes its page")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_assets_that_are_embedded_and_the_whole_is_within_its_budget() {
        let page = std::str::from_utf8(page().body).unwrap();
        let named: Vec<&str> = page.split('"').filter(|s| s.starts_with("/assets/") || *s == "/favicon.svg").collect();
        assert_eq!(named.len(), 3, "a script, a style sheet and the icon: {page}");
        for path in named {
            assert!(asset(path).is_some(), "{path} is named by the page but not embedded");
        }
        let gzipped: usize = ASSETS.iter().map(|a| a.gzip.len()).sum();
        assert!(gzipped <= BUDGET_GZIP_BYTES, "{gzipped} bytes gzipped, over the budget of {BUDGET_GZIP_BYTES}");
        // Every gzipped copy is a gzip stream (its magic bytes).
        for a in ASSETS {
            assert_eq!(&a.gzip[..2], &[0x1f, 0x8b], "{}", a.path);
        }
    }

    #[test]
    fn nothing_is_fetched_from_elsewhere_at_run_time() {
        for a in ASSETS {
            let text = String::from_utf8_lossy(a.body);
            for cdn in ["https://cdn", "unpkg.com", "jsdelivr", "googleapis"] {
                assert!(!text.contains(cdn), "{} loads from {cdn}", a.path);
            }
        }
    }
}
