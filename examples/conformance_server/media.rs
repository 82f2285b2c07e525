//! The smallest valid media files, base64-encoded as MCP carries them: what the image and audio
//! fixtures return (the suite checks their MIME types and that they have data).

/// A 1×1 red PNG (8-bit RGB).
pub const RED_PIXEL_PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR42mP4z8AAAAMBAQD3A0FDAAAAAElFTkSuQmCC";

/// One millisecond of silence: a PCM WAV file, 8 kHz, 8-bit mono, 8 samples.
pub const SILENCE_WAV: &str =
    "UklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQgAAACAgICAgICAgA==";
