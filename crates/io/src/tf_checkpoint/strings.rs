//! String tensors as TF's bundle writer stores them: the elements' lengths as varints, a masked
//! CRC-32C of the lengths (each taken as a little-endian u32, or u64 from 4 GiB on), then the
//! elements' bytes. The entry's checksum covers the lengths (taken the same way), the length
//! checksum and the bytes, in that order.

use super::varint;

/// TF's `DT_STRING`.
pub(super) const DT_STRING: i32 = 7;

fn mask(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// The `n` elements stored in `buf`, whose entry records the masked checksum `entry_crc`.
pub(super) fn decode(buf: &[u8], n: usize, entry_crc: u32) -> Result<Vec<Vec<u8>>, String> {
    // Each element takes at least its one-byte length: a larger count is a lie.
    if n > buf.len() {
        return Err(format!("{n} elements cannot lie in {} bytes", buf.len()));
    }
    let mut pos = 0;
    let mut lengths = Vec::with_capacity(n);
    let mut crc = 0u32;
    for _ in 0..n {
        let len = varint(buf, &mut pos).ok_or("its lengths are truncated")?;
        crc = match u32::try_from(len) {
            Ok(short) => crc32c::crc32c_append(crc, &short.to_le_bytes()),
            Err(_) => crc32c::crc32c_append(crc, &len.to_le_bytes()),
        };
        lengths.push(len);
    }
    let stored = buf
        .get(pos..pos + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or("its length checksum is missing")?;
    if stored != mask(crc) {
        return Err("the checksum of its lengths does not match".into());
    }
    crc = crc32c::crc32c_append(crc, &stored.to_le_bytes());
    pos += 4;
    let sum = lengths.iter().try_fold(0u64, |t, &l| t.checked_add(l));
    if sum != Some(buf.len().saturating_sub(pos) as u64) {
        return Err("its lengths do not add up to its bytes".into());
    }
    let mut out = Vec::with_capacity(n);
    for len in lengths {
        let end = pos + len as usize;
        let bytes = buf
            .get(pos..end)
            .ok_or("its lengths do not add up to its bytes")?;
        crc = crc32c::crc32c_append(crc, bytes);
        out.push(bytes.to_vec());
        pos = end;
    }
    if mask(crc) != entry_crc {
        return Err("checksum mismatch".into());
    }
    Ok(out)
}
