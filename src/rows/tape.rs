//! The tape's 8-byte slots: what a node is ([`Slot`]) and how it is stored ([`Packed`]).

use crate::Error;

/// Where a string's or number's text lies: in the event, or (flag [`DECODED`] in `len`) in
/// the tape's buffer of strings that had escapes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    pub(super) at: u32,
    pub(super) len: u32,
}

pub(super) const DECODED: u32 = 1 << 27;

/// The most text a tape's spans can reach (`len` and its flag take 28 bits of a [`Packed`]
/// slot); far more than an event (6 MB) or a source chunk (2 MiB plus one row of at most
/// 32 MiB) holds.
pub(super) const MAX_TEXT: usize = DECODED as usize - 1;

/// Refuses text the tape's spans cannot reach (past [`MAX_TEXT`]).
pub(super) fn within_spans(text: &str) -> Result<(), Error> {
    if text.len() > MAX_TEXT {
        return Err(Error::InvalidEvent(format!(
            "the rows are {} bytes; at most {MAX_TEXT} can be converted at once",
            text.len()
        )));
    }
    Ok(())
}

/// A [`Node`] as the tape works with it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Slot {
    Null,
    Bool(bool),
    /// An integer within 60 bits (nearly every one), kept in its slot.
    Int(i64),
    /// Any other i64, by its index in [`Rows::ints`].
    BigInt(u32),
    Number(Span),
    Str(Span),
    Object {
        end: u32,
    },
    Key(Span),
    Array {
        end: u32,
    },
}

/// A [`Slot`] as stored: 8 bytes, half of what the enum takes, so the tape (the largest thing
/// a conversion holds, a slot per 5 to 8 bytes of rows) needs half the memory. The low 4 bits
/// say which slot; a span keeps its length and flag in bits 4-31 and its offset in 32-63.
#[derive(Debug, Clone, Copy)]
pub(super) struct Packed(pub(super) u64);

impl Packed {
    pub(super) const NULL: u64 = 0;
    pub(super) const BOOL: u64 = 1;
    pub(super) const INT: u64 = 2;
    pub(super) const BIG_INT: u64 = 3;
    pub(super) const NUMBER: u64 = 4;
    pub(super) const STR: u64 = 5;
    pub(super) const KEY: u64 = 6;
    pub(super) const OBJECT: u64 = 7;
    pub(super) const ARRAY: u64 = 8;

    /// Whether `v` fits an [`Slot::Int`] slot.
    pub(super) fn holds(v: i64) -> bool {
        (v << 4) >> 4 == v
    }

    pub(super) fn pack(slot: Slot) -> Packed {
        let span = |tag: u64, s: Span| tag | u64::from(s.len) << 4 | u64::from(s.at) << 32;
        Packed(match slot {
            Slot::Null => Packed::NULL,
            Slot::Bool(v) => Packed::BOOL | u64::from(v) << 4,
            Slot::Int(v) => {
                debug_assert!(Packed::holds(v));
                Packed::INT | (v << 4) as u64
            }
            Slot::BigInt(i) => Packed::BIG_INT | u64::from(i) << 4,
            Slot::Number(s) => span(Packed::NUMBER, s),
            Slot::Str(s) => span(Packed::STR, s),
            Slot::Key(s) => span(Packed::KEY, s),
            Slot::Object { end } => Packed::OBJECT | u64::from(end) << 4,
            Slot::Array { end } => Packed::ARRAY | u64::from(end) << 4,
        })
    }

    #[inline]
    pub(super) fn tag(self) -> u64 {
        self.0 & 15
    }

    /// The payload of a `Bool`, `BigInt`, `Object` or `Array` slot.
    #[inline]
    pub(super) fn small(self) -> u32 {
        (self.0 >> 4) as u32
    }

    /// The span of a `Number`, `Str` or `Key` slot.
    #[inline]
    pub(super) fn span(self) -> Span {
        Span {
            at: (self.0 >> 32) as u32,
            len: (self.0 >> 4) as u32 & (DECODED | MAX_TEXT as u32),
        }
    }

    // The tape is read far more often than written (inference, then building, walk it), so
    // the readers (`Rows::node`, `skip`, `members`) decode the fields they need from the tag
    // rather than through this.
    pub(super) fn unpack(self) -> Slot {
        match self.tag() {
            Packed::NULL => Slot::Null,
            Packed::BOOL => Slot::Bool(self.small() != 0),
            Packed::INT => Slot::Int(self.0 as i64 >> 4),
            Packed::BIG_INT => Slot::BigInt(self.small()),
            Packed::NUMBER => Slot::Number(self.span()),
            Packed::STR => Slot::Str(self.span()),
            Packed::KEY => Slot::Key(self.span()),
            Packed::OBJECT => Slot::Object { end: self.small() },
            Packed::ARRAY => Slot::Array { end: self.small() },
            _ => unreachable!("only Packed::pack makes slots"),
        }
    }
}
