"""Audio duration of an upload, for the speech-to-text minutes quota.

Read from the header when the format allows it cheaply:

* WAV (RIFF/RF64 ``WAVE``): ``data`` chunk size / ``fmt `` byte rate. When the data chunk has
  no usable size (streamed WAV: 0 or 0xFFFFFFFF) the rest of the file after the chunk header
  counts as audio.
* MP3: the first frame after any ID3v2 tag; a Xing/Info or VBRI header's frame count gives
  ``frames * samples per frame / sample rate``; otherwise the stream is taken as constant bit
  rate: ``(size - audio start) * 8 / bitrate``.

Otherwise (other formats, or a header that does not reach the first frame) the duration is
``size / typical byte rate`` of the format, which is recognised by its magic bytes, then the
file name's extension, then the content type:

=================  ==========================  ===========
format             typical encoding            bytes/s
=================  ==========================  ===========
wav                16-bit PCM, 16 kHz, mono    32,000
mp3 / mpga / mpeg  128 kbit/s                  16,000
ogg / opus / webm  32 kbit/s (Opus speech)     4,000
m4a / mp4 / aac    96 kbit/s                   12,000
flac               ~64 kB/s                    64,000
unknown            as mp3                      16,000
=================  ==========================  ===========

Pass the first 64 KiB or so of the upload as ``header``.
"""

from __future__ import annotations

from collections.abc import Mapping

BYTES_PER_SECOND: Mapping[str, int] = {
    "wav": 32_000,
    "mp3": 16_000,
    "ogg": 4_000,
    "webm": 4_000,
    "m4a": 12_000,
    "flac": 64_000,
}
DEFAULT_BYTES_PER_SECOND = 16_000
ALIASES: Mapping[str, str] = {
    "wave": "wav",
    "x-wav": "wav",
    "mpga": "mp3",
    "mpeg": "mp3",
    "oga": "ogg",
    "opus": "ogg",
    "mp4": "m4a",
    "x-m4a": "m4a",
    "aac": "m4a",
    "x-flac": "flac",
}

# kbit/s by (MPEG-1?, layer), index 1..14
MP3_BITRATES: Mapping[tuple[bool, int], tuple[int, ...]] = {
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
MP3_SAMPLE_RATES: Mapping[int, tuple[int, int, int]] = {
    3: (44100, 48000, 32000),
    2: (22050, 24000, 16000),
    0: (11025, 12000, 8000),
}


def audio_duration_ms(header: bytes, size: int, filename: str, content_type: str) -> int:
    kind = audio_format(header, filename, content_type)
    exact = None
    if kind == "wav":
        exact = wav_duration_ms(header, size)
    elif kind == "mp3":
        exact = mp3_duration_ms(header, size)
    if exact is not None:
        return exact
    return size * 1000 // BYTES_PER_SECOND.get(kind or "", DEFAULT_BYTES_PER_SECOND)


def audio_format(header: bytes, filename: str, content_type: str) -> str | None:
    sniffed = _sniff(header)
    if sniffed:
        return sniffed
    extension = filename.rpartition(".")[2].lower() if "." in filename else ""
    subtype = content_type.partition(";")[0].strip().lower().rpartition("/")[2]
    for name in (extension, subtype):
        name = ALIASES.get(name, name)
        if name in BYTES_PER_SECOND:
            return name
    return None


def _sniff(header: bytes) -> str | None:
    if header[:4] in (b"RIFF", b"RF64") and header[8:12] == b"WAVE":
        return "wav"
    if len(header) > 1 and header[0] == 0xFF and header[1] & 0xF6 == 0xF0:
        return "m4a"  # AAC in ADTS frames
    if header[:3] == b"ID3" or (len(header) > 1 and header[0] == 0xFF and header[1] & 0xE0 == 0xE0):
        return "mp3"
    if header[:4] == b"OggS":
        return "ogg"
    if header[:4] == b"fLaC":
        return "flac"
    if header[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if header[4:8] == b"ftyp":
        return "m4a"
    return None


def wav_duration_ms(header: bytes, size: int) -> int | None:
    byte_rate = 0
    position = 12
    while position + 8 <= len(header):
        chunk, length = header[position : position + 4], _le(header[position + 4 : position + 8])
        body = position + 8
        if chunk == b"fmt " and body + 12 <= len(header):
            byte_rate = _le(header[body + 8 : body + 12])
        elif chunk == b"data":
            if not byte_rate:
                return None
            available = max(0, size - body)
            data = length if 0 < length <= available else available
            return data * 1000 // byte_rate
        position = body + length + (length & 1)
    return None


def mp3_duration_ms(header: bytes, size: int) -> int | None:
    start = _id3_end(header)
    for offset in range(start, max(start, len(header) - 4)):
        frame = _frame(header, offset)
        if frame is None:
            continue
        bitrate, sample_rate, samples, length, side_info = frame
        following = offset + length
        if following + 2 <= len(header) and _frame(header, following) is None:
            continue
        frames = _vbr_frames(header, offset, side_info)
        if frames:
            return frames * samples * 1000 // sample_rate
        return (size - offset) * 8 // bitrate
    return None


def _frame(data: bytes, offset: int) -> tuple[int, int, int, int, int] | None:
    """(kbit/s, Hz, samples per frame, frame length, side info size) of a frame header."""
    if offset + 4 > len(data) or data[offset] != 0xFF or data[offset + 1] & 0xE0 != 0xE0:
        return None
    version, layer_bits = (data[offset + 1] >> 3) & 3, (data[offset + 1] >> 1) & 3
    bitrate_index, rate_index = data[offset + 2] >> 4, (data[offset + 2] >> 2) & 3
    if version == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    mpeg1, layer = version == 3, 4 - layer_bits
    bitrate = MP3_BITRATES[(mpeg1, layer)][bitrate_index - 1]
    sample_rate = MP3_SAMPLE_RATES[version][rate_index]
    samples = 384 if layer == 1 else 1152 if (layer == 2 or mpeg1) else 576
    padding = (data[offset + 2] >> 1) & 1
    length = samples // 8 * bitrate * 1000 // sample_rate + padding * (4 if layer == 1 else 1)
    mono = data[offset + 3] >> 6 == 3
    side_info = (17 if mono else 32) if mpeg1 else (9 if mono else 17)
    return bitrate, sample_rate, samples, length, side_info


def _vbr_frames(data: bytes, offset: int, side_info: int) -> int | None:
    xing = offset + 4 + side_info
    if data[xing : xing + 4] in (b"Xing", b"Info") and xing + 12 <= len(data):
        flags = int.from_bytes(data[xing + 4 : xing + 8], "big")
        return int.from_bytes(data[xing + 8 : xing + 12], "big") if flags & 1 else None
    vbri = offset + 4 + 32
    if data[vbri : vbri + 4] == b"VBRI" and vbri + 18 <= len(data):
        return int.from_bytes(data[vbri + 14 : vbri + 18], "big")
    return None


def _id3_end(data: bytes) -> int:
    if data[:3] != b"ID3" or len(data) < 10:
        return 0
    size = 0
    for byte in data[6:10]:
        size = (size << 7) | (byte & 0x7F)
    footer = 10 if data[5] & 0x10 else 0
    return 10 + size + footer


def _le(data: bytes) -> int:
    return int.from_bytes(data, "little")
