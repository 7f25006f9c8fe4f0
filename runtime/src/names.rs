//! A short list of strings in one buffer: a policy's tags, an entry's tags'
//! storage names. A tagged call builds both on every call; as a
//! `Vec<String>` each costs an allocation per string and one for the list,
//! here none up to 64 bytes of text and four strings (kept inline), and
//! one past them.

use std::fmt;

use smallvec::SmallVec;

use crate::key::Key;

/// Strings, in the order they were pushed.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Names {
    /// Appended to only (see [`Key`]).
    text: Key,
    /// Where each string ends in `text`.
    ends: SmallVec<[usize; 4]>,
}

impl Names {
    pub(crate) const fn new() -> Self {
        Names {
            text: Key::new(),
            ends: SmallVec::new_const(),
        }
    }

    /// An empty list with room for `bytes` of text.
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        Names {
            text: Key::with_capacity(bytes),
            ends: SmallVec::new(),
        }
    }

    pub(crate) fn push(&mut self, name: &str) {
        self.push_with(|text| {
            text.lit(name);
        });
    }

    /// Pushes the string that `write` appends to the buffer (a `Key` can
    /// only be appended to: the strings before stay whole), built in place.
    pub(crate) fn push_with(&mut self, write: impl FnOnce(&mut Key)) {
        write(&mut self.text);
        self.ends.push(self.text.len());
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// The `i`th string.
    pub(crate) fn get(&self, i: usize) -> &str {
        let start = i.checked_sub(1).map_or(0, |before| self.ends[before]);
        &self.text[start..self.ends[i]]
    }

    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = &str> + Clone + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

impl fmt::Debug for Names {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<S: AsRef<str>> FromIterator<S> for Names {
    fn from_iter<I: IntoIterator<Item = S>>(names: I) -> Self {
        let mut list = Names::new();
        for name in names {
            list.push(name.as_ref());
        }
        list
    }
}

#[cfg(test)]
mod tests {
    use super::Names;

    #[test]
    fn strings_come_back_as_pushed_empty_ones_too() {
        let mut names = Names::new();
        assert_eq!(names.len(), 0);
        names.push("product:1");
        names.push("");
        names.push_with(|text| {
            text.lit("brand:").int(7);
        });
        assert_eq!(names.iter().collect::<Vec<_>>(), ["product:1", "", "brand:7"]);
        assert_eq!((names.len(), names.iter().len()), (3, 3));
        assert_eq!(format!("{names:?}"), r#"["product:1", "", "brand:7"]"#);
    }

    #[test]
    fn lists_are_equal_when_their_strings_are() {
        let split: Names = ["ab", "c"].into_iter().collect();
        let joined: Names = ["a", "bc"].into_iter().collect();
        assert_ne!(split, joined);
        assert_eq!(split, ["ab", "c"].into_iter().collect());
    }
}
