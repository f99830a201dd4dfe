//! Routes by path: the longest matching prefix wins (nginx `location /prefix` semantics).

#[derive(Debug)]
pub struct PathTable<T> {
    /// Sorted by prefix length, longest first, so the first match is the longest.
    routes: Vec<(Box<str>, T)>,
}

impl<T> PathTable<T> {
    pub fn new(routes: impl IntoIterator<Item = (String, T)>) -> Self {
        let mut routes: Vec<(Box<str>, T)> = routes
            .into_iter()
            .map(|(p, t)| (p.into_boxed_str(), t))
            .collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        PathTable { routes }
    }

    /// The route whose prefix is the longest one `path` starts with: its index (for [`get`](Self::get)), its
    /// prefix and the route.
    pub fn lookup(&self, path: &str) -> Option<(usize, &str, &T)> {
        self.routes
            .iter()
            .enumerate()
            .find(|(_, (prefix, _))| path.starts_with(&**prefix))
            .map(|(i, (p, t))| (i, &**p, t))
    }

    /// The route at `index` (as returned by [`lookup`](Self::lookup)) and its prefix.
    pub fn get(&self, index: usize) -> Option<(&str, &T)> {
        self.routes.get(index).map(|(p, t)| (&**p, t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_regardless_of_order() {
        let t = PathTable::new([
            ("/".to_string(), "root"),
            ("/api/v2/".to_string(), "v2"),
            ("/api/".to_string(), "api"),
            ("/ping".to_string(), "ping"),
        ]);
        let cases = [
            ("/", Some("root")),
            ("/index.html", Some("root")),
            ("/api/", Some("api")),
            ("/api/users", Some("api")),
            ("/api/v2/users", Some("v2")),
            ("/api", Some("root")),
            ("/ping", Some("ping")),
            ("/pingpong", Some("ping")),
        ];
        for (path, want) in cases {
            assert_eq!(t.lookup(path).map(|(_, _, v)| *v), want, "{path}");
            if let Some((i, p, v)) = t.lookup(path) {
                assert_eq!(t.get(i), Some((p, v)));
            }
        }
    }

    #[test]
    fn no_match_without_root_route() {
        let t = PathTable::new([("/api/".to_string(), 1)]);
        assert!(t.lookup("/other").is_none());
    }
}
