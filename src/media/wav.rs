//! WAV files in any rate, width and channel count, read as mono f32 and resampled
//! with rubato. Prompts use it at 8 kHz, speech recognition at 16 kHz.

use std::path::Path;

use rubato::{FftFixedIn, Resampler};

/// Why a WAV file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    #[error("cannot read WAV file: {0}")]
    Wav(#[from] hound::Error),
    #[error("unsupported WAV format: {0}")]
    Format(String),
    #[error("cannot resample from {from} Hz: {reason}")]
    Resample { from: u32, reason: String },
}

/// Reads a WAV file as mono samples in -1..1, with its sample rate.
pub fn read_mono(path: &Path) -> Result<(Vec<f32>, u32), WavError> {
    mono(hound::WavReader::open(path)?)
}

/// Reads WAV bytes (an upload, a speech service's answer) as mono samples in
/// -1..1, with their sample rate. A WAV written as a stream, with placeholder
/// sizes in its header (0 or 0xFFFFFFFF), is read to its end.
pub fn decode_mono(bytes: &[u8]) -> Result<(Vec<f32>, u32), WavError> {
    let mut fixed;
    let mut bytes = bytes;
    if let Some(data) = streamed_data_chunk(bytes) {
        fixed = bytes.to_vec();
        let total = u32::try_from(fixed.len() - 8).unwrap_or(u32::MAX);
        let len = u32::try_from(fixed.len() - data - 8).unwrap_or(u32::MAX);
        fixed[4..8].copy_from_slice(&total.to_le_bytes());
        fixed[data + 4..data + 8].copy_from_slice(&len.to_le_bytes());
        bytes = &fixed;
    }
    mono(hound::WavReader::new(std::io::Cursor::new(bytes))?)
}

/// Where the `data` chunk starts when the header's sizes are placeholders
/// that do not match the bytes; None for a well-formed file.
fn streamed_data_chunk(bytes: &[u8]) -> Option<usize> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return None;
    }
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        if id == b"data" {
            let rest = bytes.len() - at - 8;
            let placeholder = len as usize > rest || (len == 0 && rest > 0);
            return placeholder.then_some(at);
        }
        at = at.checked_add(8 + len as usize + (len as usize & 1))?;
    }
    None
}

/// Mono 16-bit PCM WAV bytes at `rate` (for uploads to a speech service and the
/// answers of kefu's own).
pub fn encode_pcm16(samples: &[f32], rate: u32) -> Result<Vec<u8>, WavError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = std::io::Cursor::new(Vec::with_capacity(44 + samples.len() * 2));
    let mut w = hound::WavWriter::new(&mut out, spec)?;
    for &s in samples {
        w.write_sample((s * 32767.0).clamp(-32768.0, 32767.0) as i16)?;
    }
    w.finalize()?;
    Ok(out.into_inner())
}

fn mono<R: std::io::Read>(reader: hound::WavReader<R>) -> Result<(Vec<f32>, u32), WavError> {
    let spec = reader.spec();
    if spec.channels == 0 || spec.sample_rate == 0 {
        return Err(WavError::Format("zero channels or sample rate".into()));
    }
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => {
            reader.into_samples::<f32>().collect::<Result<_, _>>()?
        }
        (hound::SampleFormat::Int, bits @ 1..=32) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()?
        }
        (format, bits) => {
            return Err(WavError::Format(format!("{bits}-bit {format:?} samples")));
        }
    };
    let channels = usize::from(spec.channels);
    let mono = interleaved
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect();
    Ok((mono, spec.sample_rate))
}

/// Converts mono audio from `rate` to `to` Hz.
///
/// Lengths that are an exact number of resampler chunks are handled too (rubato
/// refuses an empty partial chunk).
pub fn resample(mono: &[f32], rate: u32, to: u32) -> Result<Vec<f32>, WavError> {
    if rate == to {
        return Ok(mono.to_vec());
    }
    let err = |e: &dyn std::fmt::Display| WavError::Resample {
        from: rate,
        reason: e.to_string(),
    };
    const CHUNK: usize = 1024;
    let mut resampler =
        FftFixedIn::<f32>::new(rate as usize, to as usize, CHUNK, 2, 1).map_err(|e| err(&e))?;
    let expected = (mono.len() as u64 * u64::from(to)).div_ceil(u64::from(rate)) as usize;
    let delay = resampler.output_delay();
    let mut out = Vec::with_capacity(expected + delay + CHUNK);
    let mut chunks = mono.chunks_exact(CHUNK);
    for chunk in chunks.by_ref() {
        out.extend_from_slice(&resampler.process(&[chunk], None).map_err(|e| err(&e))?[0]);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        out.extend_from_slice(
            &resampler
                .process_partial(Some(&[rest]), None)
                .map_err(|e| err(&e))?[0],
        );
    }
    while out.len() < expected + delay {
        let tail = resampler
            .process_partial(None::<&[&[f32]]>, None)
            .map_err(|e| err(&e))?;
        if tail[0].is_empty() {
            break;
        }
        out.extend_from_slice(&tail[0]);
    }
    out.drain(..delay.min(out.len()));
    out.truncate(expected);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_keeps_duration_for_any_length() {
        // 2048 samples is an exact number of resampler chunks (rubato's edge case).
        for len in [0usize, 1, 1000, 1024, 2048, 22050] {
            let input: Vec<f32> = (0..len).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
            let out = resample(&input, 22050, 8000).unwrap();
            assert_eq!(out.len(), (len * 8000).div_ceil(22050), "length {len}");
        }
    }

    #[test]
    fn wav_bytes_round_trip_and_streamed_headers_are_read_to_the_end() {
        let tone: Vec<f32> = (0..1600).map(|i| (i as f32 * 0.1).sin() * 0.5).collect();
        let bytes = encode_pcm16(&tone, 16_000).unwrap();
        let (back, rate) = decode_mono(&bytes).unwrap();
        assert_eq!(rate, 16_000);
        assert_eq!(back.len(), tone.len());
        assert!(back.iter().zip(&tone).all(|(a, b)| (a - b).abs() < 1e-3));
        // A stream's header: sizes unknown when it was written.
        let mut streamed = bytes.clone();
        streamed[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        streamed[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_mono(&streamed).unwrap().0.len(), tone.len());
        let mut zeros = bytes;
        zeros[4..8].copy_from_slice(&0u32.to_le_bytes());
        zeros[40..44].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(decode_mono(&zeros).unwrap().0.len(), tone.len());
        // Not a WAV, or cut inside its header: an error, never a panic.
        assert!(decode_mono(b"ID3\x04 an mp3").is_err());
        assert!(decode_mono(b"RIFF").is_err());
        assert!(decode_mono(&[]).is_err());
    }
}
