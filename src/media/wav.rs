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
    let reader = hound::WavReader::open(path)?;
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
}
