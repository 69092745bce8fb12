//! UTF-16 <-> UTF-8 helpers for strings that cross the N-API boundary: JavaScript strings are UTF-16 and may
//! hold lone surrogates, which the contract layer (UTF-8) must reject rather than silently replace.

/// Appends UTF-16 `units` to `out` as UTF-8; lone surrogates become U+FFFD. Returns true if there was one.
pub fn push_utf16(units: &[u16], out: &mut Vec<u8>) -> bool {
    // The common case: ASCII. Written without early exits so the compiler vectorizes both loops.
    if units.iter().fold(0u16, |acc, &u| acc | u) < 0x80 {
        let start = out.len();
        out.resize(start + units.len(), 0);
        for (d, &u) in out[start..].iter_mut().zip(units) {
            // Every unit is < 0x80, so the cast keeps the value.
            *d = u as u8;
        }
        return false;
    }
    let mut lone = false;
    let mut tmp = [0u8; 4];
    for c in char::decode_utf16(units.iter().copied()) {
        let c = c.unwrap_or_else(|_| {
            lone = true;
            char::REPLACEMENT_CHARACTER
        });
        out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
    }
    lone
}

/// Indexes (in UTF-16 units) of unpaired surrogates.
pub fn lone_surrogate_positions(units: &[u16]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < units.len() {
        let u = units[i];
        if (0xD800..0xDC00).contains(&u)
            && units
                .get(i + 1)
                .is_some_and(|n| (0xDC00..0xE000).contains(n))
        {
            i += 2;
            continue;
        }
        if (0xD800..0xE000).contains(&u) {
            out.push(i);
        }
        i += 1;
    }
    out
}

#[cfg_attr(target_family = "wasm", allow(dead_code))]
pub fn contains_replacement_char(b: &[u8]) -> bool {
    memchr::memmem::find(b, "\u{FFFD}".as_bytes()).is_some()
}

/// Converts byte offsets within valid UTF-8 to UTF-16 offsets.
pub fn utf16_len(b: &[u8]) -> usize {
    // Every character has one non-continuation byte; 4-byte characters are surrogate pairs in UTF-16.
    b.iter().filter(|&&c| (c & 0xC0) != 0x80).count() + b.iter().filter(|&&c| c >= 0xF0).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_offsets_count_surrogate_pairs() {
        assert_eq!(utf16_len("abc".as_bytes()), 3);
        assert_eq!(utf16_len("é".as_bytes()), 1);
        assert_eq!(utf16_len("€".as_bytes()), 1);
        assert_eq!(utf16_len("😀".as_bytes()), 2);
        assert_eq!(utf16_len("a😀é".as_bytes()), "a😀é".encode_utf16().count());
    }

    #[test]
    fn utf16_transcoding_matches_std_and_flags_lone_surrogates() {
        for s in ["", "ascii only", "é", "😀 x", "mixed ü and 😀 and \u{7f}"] {
            let units: Vec<u16> = s.encode_utf16().collect();
            let mut out = b"prefix".to_vec();
            assert!(!push_utf16(&units, &mut out), "{s}");
            assert_eq!(&out[6..], s.as_bytes());
        }
        let mut out = Vec::new();
        assert!(push_utf16(&[0x61, 0xD800, 0x62], &mut out));
        assert_eq!(out, "a\u{FFFD}b".as_bytes());
    }

    #[test]
    fn lone_surrogates_are_found() {
        assert_eq!(
            lone_surrogate_positions(&[0x61, 0xD83D, 0xDE00]),
            Vec::<usize>::new()
        );
        assert_eq!(lone_surrogate_positions(&[0xD800]), [0]);
        assert_eq!(
            lone_surrogate_positions(&[0x61, 0xDC00, 0xD800, 0x61]),
            [1, 2]
        );
        assert_eq!(lone_surrogate_positions(&[0xD800, 0xD800, 0xDC00]), [0]);
    }
}
