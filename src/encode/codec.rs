//! The Parquet compression codecs a target can ask for.

/// A Parquet compression codec, as spelled in an event's `compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Uncompressed,
    Snappy,
    Zstd,
    Gzip,
    /// Parquet's `LZ4_RAW`: the old Hadoop-framed `LZ4` is deprecated and unreadable by some
    /// readers.
    Lz4,
    Brotli,
}

impl Codec {
    pub const ALL: [Codec; 6] = [
        Codec::Uncompressed,
        Codec::Snappy,
        Codec::Zstd,
        Codec::Gzip,
        Codec::Lz4,
        Codec::Brotli,
    ];

    /// The event spelling (lower case).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Uncompressed => "uncompressed",
            Codec::Snappy => "snappy",
            Codec::Zstd => "zstd",
            Codec::Gzip => "gzip",
            Codec::Lz4 => "lz4",
            Codec::Brotli => "brotli",
        }
    }

    /// The file name ending Spark (parquet-mr) gives this codec, so our objects sit next to
    /// Spark-written ones without surprises.
    pub fn file_suffix(self) -> &'static str {
        match self {
            Codec::Uncompressed => ".parquet",
            Codec::Snappy => ".snappy.parquet",
            Codec::Zstd => ".zstd.parquet",
            Codec::Gzip => ".gz.parquet",
            Codec::Lz4 => ".lz4raw.parquet",
            Codec::Brotli => ".br.parquet",
        }
    }

    /// Case-insensitive lookup of the event spelling.
    pub fn from_name(name: &str) -> Option<Codec> {
        Codec::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_names_are_case_insensitive_and_suffixes_follow_spark() {
        assert_eq!(Codec::from_name("SNAPPY"), Some(Codec::Snappy));
        assert_eq!(Codec::from_name("Lz4"), Some(Codec::Lz4));
        assert_eq!(Codec::from_name("lzo"), None);
        for c in Codec::ALL {
            assert_eq!(Codec::from_name(c.name()), Some(c));
            assert!(c.file_suffix().ends_with(".parquet"));
        }
        assert_eq!(Codec::Gzip.file_suffix(), ".gz.parquet");
    }
}
