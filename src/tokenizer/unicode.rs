//! Unicode helpers shared by the tokenizers: llama.cpp's code point categories and GPT-2's
//! byte-to-unicode mapping.

use super::unicode_data::{CATEGORY_RANGES, WHITESPACE};

pub(crate) const UNDEFINED: u8 = 0x01;
pub(crate) const NUMBER: u8 = 0x02;
pub(crate) const LETTER: u8 = 0x04;
pub(crate) const ACCENT_MARK: u8 = 0x10;
pub(crate) const PUNCTUATION: u8 = 0x20;
pub(crate) const SYMBOL: u8 = 0x40;

/// Category flags of one code point, as llama.cpp's `unicode_cpt_flags`. The default value is
/// what llama.cpp's splitters see past the end of a fragment: no category and not whitespace.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct Flags {
    category: u8,
    whitespace: bool,
}

impl Flags {
    pub(crate) fn is_letter(self) -> bool {
        self.category & LETTER != 0
    }
    pub(crate) fn is_number(self) -> bool {
        self.category & NUMBER != 0
    }
    pub(crate) fn is_accent_mark(self) -> bool {
        self.category & ACCENT_MARK != 0
    }
    pub(crate) fn is_whitespace(self) -> bool {
        self.whitespace
    }
    /// llama.cpp's `as_uint() != 0`: true for every real code point, false past the fragment.
    pub(crate) fn is_defined(self) -> bool {
        self.category != 0 || self.whitespace
    }
    /// The category bits alone (`category_flag()`).
    pub(crate) fn category(self) -> u8 {
        self.category
    }
}

/// llama.cpp's `unicode_cpt_flags_from_cpt`.
pub(crate) fn flags(cpt: char) -> Flags {
    let c = cpt as u32;
    let idx = CATEGORY_RANGES.partition_point(|&(start, _)| start <= c);
    let category = if idx == 0 {
        UNDEFINED
    } else {
        CATEGORY_RANGES[idx - 1].1
    };
    let whitespace = if c < 0x80 {
        matches!(c, 0x09..=0x0D | 0x20)
    } else {
        WHITESPACE.contains(&c)
    };
    Flags {
        category,
        whitespace,
    }
}

/// GPT-2's byte-to-unicode table: byte `b` is written as this character in byte-level BPE
/// vocabularies (printable Latin-1 bytes stand for themselves, the others move to U+0100..).
pub(crate) fn byte_to_char(b: u8) -> char {
    BYTE_TO_CHAR[b as usize]
}

/// The inverse of [`byte_to_char`].
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let i = c as usize;
    if i < CHAR_TO_BYTE.len() {
        let b = CHAR_TO_BYTE[i];
        if b >= 0 {
            return Some(b as u8);
        }
    }
    None
}

const fn is_self_mapped(b: u32) -> bool {
    (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
}

const fn build_byte_to_char() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut n = 0u32;
    let mut b = 0u32;
    while b < 256 {
        let cp = if is_self_mapped(b) {
            b
        } else {
            n += 1;
            255 + n
        };
        out[b as usize] = match char::from_u32(cp) {
            Some(c) => c,
            None => '\0',
        };
        b += 1;
    }
    out
}

const fn build_char_to_byte() -> [i16; 0x144] {
    let mut out = [-1i16; 0x144];
    let mut b = 0usize;
    while b < 256 {
        out[BYTE_TO_CHAR[b] as usize] = b as i16;
        b += 1;
    }
    out
}

static BYTE_TO_CHAR: [char; 256] = build_byte_to_char();
static CHAR_TO_BYTE: [i16; 0x144] = build_char_to_byte();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_match_llama_cpp() {
        assert!(flags('a').is_letter());
        assert!(flags('7').is_number());
        assert!(flags(' ').is_whitespace());
        assert!(flags('\u{3000}').is_whitespace());
        assert!(flags('\u{0301}').is_accent_mark());
        assert_eq!(flags('!').category(), PUNCTUATION);
        assert_eq!(flags('$').category(), SYMBOL);
        assert!(flags('日').is_letter());
        assert!(flags('\u{10FFFF}').is_defined());
        assert!(!Flags::default().is_defined());
    }

    #[test]
    fn gpt2_byte_map_round_trips() {
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'a'), 'a');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b));
        }
        assert_eq!(char_to_byte('日'), None);
    }
}
