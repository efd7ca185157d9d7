"""The local estimators: text, prompts, speech durations (synthetic headers)."""

from __future__ import annotations

import struct

import pytest

from gateway.metering.estimate import (
    estimate_prompt_tokens,
    estimate_text_tokens,
    stt_audio_ms,
    tts_audio_ms,
)


def test_text_tokens_are_ceil_chars_over_four() -> None:
    assert [estimate_text_tokens("x" * n) for n in (0, 1, 4, 5, 400)] == [0, 1, 1, 2, 100]


def test_prompt_tokens_of_chat_messages() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "x" * 40},  # 10 + 4
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "y" * 20},
                    {"type": "image_url", "image_url": {"url": "data:..."}},
                ],
            },  # 5 + 85 + 4
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"function": {"name": "abcd", "arguments": "{}" * 6}}],
            },  # 4 + 4
        ]
    }
    assert estimate_prompt_tokens(body) == 14 + 94 + 8


@pytest.mark.parametrize(
    ("body", "tokens"),
    [
        ({"prompt": "x" * 8}, 2),
        ({"prompt": ["x" * 8, "y" * 4]}, 3),
        ({"prompt": [1, 2, 3]}, 3),
        ({"input": "x" * 9}, 3),
        ({"input": ["abcd", "abcde"]}, 3),
        ({"input": [[1, 2], [3]]}, 3),
        ({"input": [{"role": "user", "content": "x" * 8}]}, 6),
        ({"model": "m"}, 0),
    ],
)
def test_prompt_tokens_of_prompt_and_input(body: dict[str, object], tokens: int) -> None:
    assert estimate_prompt_tokens(body) == tokens


def test_tts_is_fifteen_chars_a_second() -> None:
    assert tts_audio_ms(150) == 10_000
    assert tts_audio_ms(1) == 67


def wav(data_bytes: int, *, rate: int = 16000, channels: int = 1, bits: int = 16) -> bytes:
    byte_rate = rate * channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, byte_rate, channels * bits // 8, bits)
    return (
        b"RIFF"
        + struct.pack("<I", min(36 + data_bytes, 0xFFFFFFFF))
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"LIST"
        + struct.pack("<I", 4)
        + b"INFO"
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def test_wav_duration_from_the_header() -> None:
    header = wav(88200 * 3, rate=44100, channels=1, bits=16)
    assert stt_audio_ms(header, len(header) + 88200 * 3, "a.bin", "") == 3000


def test_streamed_wav_uses_the_file_size() -> None:
    header = wav(0xFFFFFFFF)
    assert stt_audio_ms(header, len(header) + 64000, "a.wav", "audio/wav") == 2000


def mp3_frame(*, xing_frames: int | None = None, vbri_frames: int | None = None) -> bytes:
    """An MPEG-1 Layer III frame: 128 kbit/s, 44.1 kHz, stereo (417 bytes)."""
    frame = bytearray(b"\xff\xfb\x90\x04" + bytes(413))
    if xing_frames is not None:
        frame[36:48] = b"Xing" + struct.pack(">II", 1, xing_frames)
    if vbri_frames is not None:
        frame[36:54] = b"VBRI" + struct.pack(">HHHII", 1, 0, 0, 0, vbri_frames)
    return bytes(frame)


def id3(size: int) -> bytes:
    syncsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    return b"ID3\x04\x00\x00" + syncsafe + bytes(size)


def test_mp3_constant_bitrate() -> None:
    header = id3(100) + mp3_frame() * 3
    size = 110 + 16_000 * 5  # five seconds at 128 kbit/s after the tag
    assert stt_audio_ms(header, size, "speech.mp3", "audio/mpeg") == 5000


@pytest.mark.parametrize("kind", ["xing", "vbri"])
def test_mp3_vbr_frame_count(kind: str) -> None:
    first = mp3_frame(**{f"{kind}_frames": 1000})
    header = first + mp3_frame() * 2
    assert stt_audio_ms(header, 10_000_000, "x", "") == 1000 * 1152 * 1000 // 44100


@pytest.mark.parametrize(
    ("header", "filename", "content_type", "ms"),
    [
        (b"OggS" + bytes(60), "", "", 10_000),
        (b"\x1a\x45\xdf\xa3" + bytes(60), "", "", 10_000),
        (bytes(4) + b"ftypM4A " + bytes(60), "", "", 3333),
        (b"fLaC" + bytes(60), "", "", 625),
        (bytes(64), "voice.opus", "", 10_000),
        (bytes(64), "voice.m4a", "", 3333),
        (bytes(64), "upload", "audio/flac", 625),
        (bytes(64), "upload", "audio/wav; codecs=1", 1250),
        (bytes(64), "upload", "application/octet-stream", 2500),
        (b"\xff\xf1\x50\x80" + bytes(60), "", "", 3333),  # AAC (ADTS)
    ],
)
def test_typical_bitrates_by_format(
    header: bytes, filename: str, content_type: str, ms: int
) -> None:
    assert stt_audio_ms(header, 40_000, filename, content_type) == ms


def test_id3_tag_larger_than_the_header_falls_back_to_mp3_rate() -> None:
    assert stt_audio_ms(id3(100_000)[:1000], 160_000, "a.mp3", "") == 10_000
