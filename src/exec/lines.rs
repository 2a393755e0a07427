//! From a process's byte stream to masked lines.
//!
//! - [`Masker`] replaces every occurrence of a secret by `*****`. It runs on every line
//!   before the line reaches the sink, so a secret never reaches the log store.
//! - [`LineSplitter`] cuts bytes into lines: `\n` or `\r\n` ends a line, the last line counts
//!   even without a newline, and a line longer than the bound is cut into pieces (none of the
//!   output is lost). Invalid UTF-8 is replaced by U+FFFD; a character split across reads is
//!   kept whole. When a long line is cut, the last bytes that could be the start of a secret
//!   are held back until the rest arrives, so masking cannot be dodged by a cut.

/// What a secret is replaced with.
pub const MASK: &str = "*****";

/// Longest line kept whole; longer lines are cut into pieces of at most this many bytes.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Replaces secrets in text.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    /// Longest first, so a secret that contains another is masked whole.
    secrets: Vec<String>,
}

impl Masker {
    /// A masker for `secrets`. Empty ones are ignored; a secret of several lines is also masked
    /// line by line, since output reaches the masker one line at a time.
    pub fn new<S: AsRef<str>>(secrets: &[S]) -> Masker {
        let mut all: Vec<String> = Vec::new();
        for s in secrets {
            let s = s.as_ref();
            all.push(s.to_string());
            if s.contains('\n') {
                all.extend(s.lines().map(|l| l.trim_end_matches('\r').to_string()));
            }
        }
        all.retain(|s| !s.is_empty());
        all.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        all.dedup();
        Masker { secrets: all }
    }

    pub fn mask(&self, text: String) -> String {
        let mut text = text;
        for s in &self.secrets {
            if text.contains(s.as_str()) {
                text = text.replace(s.as_str(), MASK);
            }
        }
        text
    }

    /// Bytes of the longest secret.
    fn longest(&self) -> usize {
        self.secrets.first().map_or(0, String::len)
    }
}

/// Splits a byte stream into masked lines.
#[derive(Debug)]
pub struct LineSplitter<'m> {
    buf: Vec<u8>,
    max: usize,
    masker: &'m Masker,
}

impl<'m> LineSplitter<'m> {
    pub fn new(masker: &'m Masker, max: usize) -> LineSplitter<'m> {
        LineSplitter { buf: Vec::new(), max: max.max(16), masker }
    }

    /// Takes the next bytes read; calls `emit` for each line they complete.
    pub fn push(&mut self, data: &[u8], emit: &mut dyn FnMut(String)) {
        self.buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(i) = self.buf[start..].iter().position(|b| *b == b'\n') {
            let end = start + i;
            let line = &self.buf[start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            // The whole line is here: mask it, then cut it if it is too long.
            let text = self.masker.mask(String::from_utf8_lossy(line).into_owned());
            emit_pieces(&text, self.max, emit);
            start = end + 1;
        }
        self.buf.drain(..start);
        if self.buf.len() >= self.max {
            self.cut_long_line(emit);
        }
    }

    /// The stream ended: emits the last line if it had no newline.
    pub fn finish(&mut self, emit: &mut dyn FnMut(String)) {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            let rest = rest.strip_suffix(b"\r").unwrap_or(&rest);
            let text = self.masker.mask(String::from_utf8_lossy(rest).into_owned());
            emit_pieces(&text, self.max, emit);
        }
    }

    /// The unfinished line has reached the bound: emits full pieces of it, keeping the rest
    /// (at least the held-back tail) for later.
    fn cut_long_line(&mut self, emit: &mut dyn FnMut(String)) {
        // A character cut by the read stays whole for the next round.
        let complete = complete_utf8_len(&self.buf);
        let incomplete = self.buf.split_off(complete);
        let text = self.masker.mask(String::from_utf8_lossy(&self.buf).into_owned());
        // Hold back what could be the beginning of a secret whose end has not arrived yet.
        let hold = self.masker.longest().saturating_sub(1).min(self.max / 2);
        let keep_from = floor_char_boundary(&text, text.len().saturating_sub(hold));
        let mut emitted = 0;
        while keep_from - emitted >= self.max {
            let end = floor_char_boundary(&text, emitted + self.max);
            emit(text[emitted..end].to_string());
            emitted = end;
        }
        let mut rest = text.as_bytes()[emitted..].to_vec();
        rest.extend_from_slice(&incomplete);
        self.buf = rest;
    }
}

/// Emits `text` in pieces of at most `max` bytes, cut at character boundaries.
fn emit_pieces(text: &str, max: usize, emit: &mut dyn FnMut(String)) {
    if text.len() <= max {
        emit(text.to_string());
        return;
    }
    let mut from = 0;
    while from < text.len() {
        let end = floor_char_boundary(text, from + max);
        emit(text[from..end].to_string());
        from = end;
    }
}

/// Length of the longest prefix of `b` that does not end inside a UTF-8 sequence.
fn complete_utf8_len(b: &[u8]) -> usize {
    for back in 1..=3.min(b.len()) {
        let i = b.len() - back;
        let byte = b[i];
        if byte & 0b1100_0000 == 0b1100_0000 {
            let need = if byte >= 0b1111_0000 {
                4
            } else if byte >= 0b1110_0000 {
                3
            } else {
                2
            };
            return if back < need { i } else { b.len() };
        }
        if byte & 0b1000_0000 == 0 {
            return b.len();
        }
    }
    b.len()
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(masker: &Masker, max: usize, reads: &[&[u8]]) -> Vec<String> {
        let mut out = Vec::new();
        let mut s = LineSplitter::new(masker, max);
        for r in reads {
            s.push(r, &mut |l| out.push(l));
        }
        s.finish(&mut |l| out.push(l));
        out
    }

    #[test]
    fn lines_end_at_newlines_and_the_last_one_counts_without() {
        let m = Masker::default();
        assert_eq!(split(&m, 100, &[b"a\r\nb", b"c\n\nd"]), vec!["a", "bc", "", "d"]);
        assert_eq!(split(&m, 100, &[b"x\n"]), vec!["x"]);
    }

    #[test]
    fn secrets_are_masked_longest_first_and_multi_line_secrets_per_line() {
        let m = Masker::new(&["pass", "password1", "", "line1\nline2"]);
        assert_eq!(m.mask("password1 pass line2".into()), "***** ***** *****");
    }

    #[test]
    fn long_lines_are_cut_without_losing_bytes_or_leaking_a_secret() {
        let m = Masker::default();
        let long = "x".repeat(40);
        let out = split(&m, 16, &[long.as_bytes(), b"\n"]);
        assert!(out.iter().all(|l| l.len() <= 16), "{out:?}");
        assert_eq!(out.concat(), long);

        let m = Masker::new(&["SECRET"]);
        let text = format!("{}SECRET{}\n", "a".repeat(13), "b".repeat(30));
        // Cut the input right in the middle of the secret.
        let out = split(&m, 16, &[&text.as_bytes()[..16], &text.as_bytes()[16..]]);
        let joined = out.concat();
        assert!(!joined.contains("SECRET") && !joined.contains("SEC"), "{out:?}");
        assert_eq!(joined, format!("{}*****{}", "a".repeat(13), "b".repeat(30)));
    }

    #[test]
    fn a_character_split_across_reads_stays_whole() {
        let m = Masker::default();
        let s = "é".repeat(20); // 40 bytes
        let b = s.as_bytes();
        let out = split(&m, 16, &[&b[..15], &b[15..]]);
        assert_eq!(out.concat(), s);
        assert!(!out.concat().contains('\u{FFFD}'));
    }
}
