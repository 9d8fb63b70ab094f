//! Hashing while streaming, with a byte cap: every blob is verified in the same pass that
//! copies or unpacks it, and no decompression can run away with the disk.

use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

/// A reader that hashes and counts what passes through it and fails once more than `limit`
/// bytes were read (a gzip bomb or a lying size field stops there).
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    limit: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R, limit: u64) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
            limit,
        }
    }

    /// Reads to the end (so trailing bytes count too) and returns (lowercase hex sha256, bytes).
    pub(crate) fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((hex::encode(self.hasher.finalize()), self.count))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        if self.count > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("more than {} bytes", self.limit),
            ));
        }
        Ok(n)
    }
}

/// A reader that fails once more than `limit` bytes were read, with an error saying so rather
/// than the silent end of stream `Read::take` would give.
pub(crate) struct CappedReader<R> {
    inner: R,
    count: u64,
    limit: u64,
}

impl<R: Read> CappedReader<R> {
    pub(crate) fn new(inner: R, limit: u64) -> Self {
        CappedReader {
            inner,
            count: 0,
            limit,
        }
    }
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if self.count > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("more than {} bytes", self.limit),
            ));
        }
        Ok(n)
    }
}

/// Lowercase hex sha256 of a byte slice.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Compression of a layer blob, told by its first bytes rather than a media type (docker save
/// archives carry no media types, and some tools mislabel them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

impl Compression {
    pub(crate) fn sniff(head: &[u8]) -> Compression {
        match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            [b'B', b'Z', b'h', ..] => Compression::Bzip2,
            [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Compression::Xz,
            _ => Compression::None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
        }
    }
}

/// Opens `file` as a possibly gzip-compressed stream, sniffing the magic bytes.
pub(crate) fn decompressed(
    mut file: std::fs::File,
    blob: &str,
) -> Result<Box<dyn Read + Send>, super::ImageError> {
    use std::io::{Seek, SeekFrom};
    let mut head = [0u8; 6];
    let mut got = 0;
    while got < head.len() {
        let n = file
            .read(&mut head[got..])
            .map_err(|e| super::ImageError::io(blob, e))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|e| super::ImageError::io(blob, e))?;
    match Compression::sniff(&head[..got]) {
        Compression::None => Ok(Box::new(io::BufReader::new(file))),
        Compression::Gzip => Ok(Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::new(file),
        ))),
        other => Err(super::ImageError::UnsupportedCompression {
            blob: blob.to_owned(),
            compression: other.name(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_reader_stops_past_its_limit() {
        let data = vec![7u8; 100];
        let r = HashingReader::new(&data[..], 50);
        let err = r.finish().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        let (hex, n) = HashingReader::new(&data[..], 100).finish().unwrap();
        assert_eq!(n, 100);
        assert_eq!(hex, sha256_hex(&data));
    }

    #[test]
    fn compression_is_told_by_magic_bytes() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"bin/"), Compression::None);
        assert_eq!(Compression::sniff(b""), Compression::None);
    }
}
