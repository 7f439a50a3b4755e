//! Positions in the WAL and the segments holding them: `0/2000028` and
//! `000000010000000000000002`.

use std::fmt;

/// A WAL position (an LSN), written `X/Y` in hex as PostgreSQL does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    pub fn parse(text: &str) -> Option<Lsn> {
        let (high, low) = text.trim().split_once('/')?;
        let hex = |part: &str| {
            (!part.is_empty() && part.len() <= 8)
                .then(|| u32::from_str_radix(part, 16).ok())
                .flatten()
        };
        Some(Lsn((u64::from(hex(high)?) << 32) | u64::from(hex(low)?)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

/// A WAL segment: its timeline and number, for a cluster's segment size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Segment {
    pub timeline: u32,
    pub number: u64,
}

impl Segment {
    /// The segment holding `lsn`.
    pub fn of(lsn: Lsn, timeline: u32, segment_size: u64) -> Segment {
        Segment {
            timeline,
            number: lsn.0 / segment_size,
        }
    }

    /// The segment holding the byte just before `lsn`: the last one a range ending there
    /// needs (a range ending on a boundary does not need the segment starting at it).
    pub fn ending_at(lsn: Lsn, timeline: u32, segment_size: u64) -> Segment {
        Segment::of(Lsn(lsn.0.saturating_sub(1)), timeline, segment_size)
    }

    /// Its file name, `TTTTTTTTXXXXXXXXYYYYYYYY`.
    pub fn name(&self, segment_size: u64) -> String {
        let per_id = 0x1_0000_0000 / segment_size;
        format!(
            "{:08X}{:08X}{:08X}",
            self.timeline,
            self.number / per_id,
            self.number % per_id
        )
    }

    /// The segment a file name names (24 hex digits), for a cluster's segment size.
    pub fn parse(name: &str, segment_size: u64) -> Option<Segment> {
        if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let part = |range: std::ops::Range<usize>| u64::from_str_radix(&name[range], 16).ok();
        let per_id = 0x1_0000_0000 / segment_size;
        let low = part(16..24)?;
        if low >= per_id {
            return None;
        }
        Some(Segment {
            timeline: u32::try_from(part(0..8)?).ok()?,
            number: part(8..16)? * per_id + low,
        })
    }

    pub fn next(&self) -> Segment {
        Segment {
            timeline: self.timeline,
            number: self.number + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB16: u64 = 16 << 20;

    #[test]
    fn lsns_and_segments_read_and_write_as_postgresql_does() {
        let lsn = Lsn::parse("0/2000028").unwrap();
        assert_eq!(lsn.0, 0x2000028);
        assert_eq!(lsn.to_string(), "0/2000028");
        assert_eq!(Lsn::parse("A/FF000000").unwrap().to_string(), "A/FF000000");
        for bad in ["", "0", "/1", "0/", "x/1", "123456789/0"] {
            assert_eq!(Lsn::parse(bad), None, "{bad}");
        }
        let segment = Segment::of(lsn, 1, MIB16);
        assert_eq!(segment.name(MIB16), "000000010000000000000002");
        assert_eq!(
            Segment::parse("000000010000000000000002", MIB16),
            Some(segment)
        );
        // 256 segments of 16 MiB per log id: the 255th, then the next log id.
        let last = Segment::parse("0000000100000000000000FF", MIB16).unwrap();
        assert_eq!(last.next().name(MIB16), "000000010000000100000000");
        assert_eq!(Segment::parse("000000010000000000000100", MIB16), None);
        // A range ending exactly on a boundary does not need the next segment.
        let end = Lsn::parse("0/3000000").unwrap();
        assert_eq!(
            Segment::ending_at(end, 1, MIB16).name(MIB16),
            "000000010000000000000002"
        );
        // Other segment sizes (initdb --wal-segsize).
        let one_gib = 1 << 30;
        let s = Segment::of(Lsn::parse("1/40000000").unwrap(), 2, one_gib);
        assert_eq!(s.name(one_gib), "000000020000000100000001");
        assert_eq!(Segment::parse(&s.name(one_gib), one_gib), Some(s));
    }
}
