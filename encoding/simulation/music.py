"""Synthetic music clips with controlled attributes, and captions written from those attributes.

Each clip is drawn from a *style* (a genre-like preset of tempo range, instruments, drums, mode and
register) and rendered with numpy: an additive-synthesis melody on a lead instrument, a bass line,
sustained chords for some styles, and a drum kit. Its caption describes the drawn attributes in
varied, human-style sentences, so caption semantics and acoustics are related but not identical.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from encoding.data import ClipSet


@dataclass(frozen=True)
class Style:
    """A genre-like preset. Tempo in beats per minute; registers are MIDI octave numbers."""

    name: str
    tempo: tuple[int, int]
    leads: tuple[str, ...]
    drums: float  # probability that a clip of this style has drums
    minor: float  # probability of a minor mode
    registers: tuple[str, ...]
    loudness: tuple[str, ...]
    chords: bool


STYLES = {
    s.name: s
    for s in (
        Style("rock", (110, 150), ("distorted guitar", "organ"), 1.0, 0.4, ("mid", "low"), ("loud",), True),
        Style("classical", (60, 100), ("strings", "piano", "flute"), 0.0, 0.5, ("mid", "high"), ("soft", "moderate"), True),
        Style("electronic", (120, 135), ("synthesizer",), 1.0, 0.5, ("mid", "high"), ("loud", "moderate"), True),
        Style("jazz", (90, 180), ("piano", "saxophone"), 0.8, 0.3, ("mid",), ("moderate", "soft"), True),
        Style("ambient", (50, 80), ("synthesizer", "flute", "strings"), 0.1, 0.5, ("high", "mid"), ("soft",), True),
        Style("folk", (80, 120), ("plucked guitar", "flute"), 0.3, 0.3, ("mid", "high"), ("moderate", "soft"), False),
    )
}
GENRES = tuple(STYLES)

INSTRUMENTS = ("distorted guitar", "organ", "strings", "piano", "flute", "synthesizer", "saxophone", "plucked guitar")
REGISTER_OCTAVE = {"low": 2, "mid": 4, "high": 5}
LOUDNESS_DB = {"soft": -24.0, "moderate": -14.0, "loud": -6.0}


@dataclass(frozen=True)
class ClipAttributes:
    """What a synthetic clip is made of (all drawn from its style)."""

    genre: str
    tempo_bpm: float
    lead: str
    drums: bool
    mode: str  # "major" or "minor"
    register: str  # "low", "mid" or "high"
    loudness: str  # "soft", "moderate" or "loud"
    root_midi: int


def draw_attributes(genre: str, rng: np.random.Generator) -> ClipAttributes:
    """Draw one clip's attributes from a style."""
    style = STYLES[genre]
    register = str(rng.choice(style.registers))
    return ClipAttributes(
        genre=genre,
        tempo_bpm=float(rng.integers(style.tempo[0], style.tempo[1] + 1)),
        lead=str(rng.choice(style.leads)),
        drums=bool(rng.random() < style.drums),
        mode="minor" if rng.random() < style.minor else "major",
        register=register,
        loudness=str(rng.choice(style.loudness)),
        root_midi=12 * (REGISTER_OCTAVE[register] + 1) + int(rng.integers(0, 12)),
    )


# ---------------------------------------------------------------------------------------------
# captions

_TEMPO = (  # (upper bpm, adjectives, adverbs)
    (75, ("slow", "unhurried", "languid"), ("slowly", "at a leisurely pace")),
    (115, ("mid-tempo", "steady", "moderately paced"), ("at a steady pace", "at a walking pace")),
    (1e9, ("fast", "driving", "up-tempo"), ("briskly", "at a quick pace")),
)
_MOOD = {("major", "loud"): ("energetic", "triumphant"), ("minor", "loud"): ("aggressive", "dark and intense"),
         ("major", "moderate"): ("cheerful", "warm"), ("minor", "moderate"): ("moody", "bittersweet"),
         ("major", "soft"): ("calm", "peaceful"), ("minor", "soft"): ("melancholic", "wistful")}
_REGISTER_WORDS = {"low": "low, heavy", "mid": "mid-range", "high": "bright, high"}
_LOUD_WORDS = {"soft": ("quiet", "gentle"), "moderate": ("balanced", "relaxed"), "loud": ("loud", "powerful")}
_TEMPLATES = (
    "A {tempo} {genre} piece with {a_lead}{drums}, {loud} and {mood}.",
    "This is a {mood} {genre} track: a {register} {lead} melody{drums_with}, played {tempo_adv}.",
    "{Genre} music led by {a_lead} in a {register} register{drums_with}; it feels {mood} and {loud}.",
    "A {loud}, {mood} {genre} recording featuring {a_lead}{drums}, played {tempo_adv}.",
)


def caption(attrs: ClipAttributes, rng: np.random.Generator) -> str:
    """A human-style description of a clip's attributes (template and synonyms drawn at random)."""
    _, adjectives, adverbs = next(row for row in _TEMPO if attrs.tempo_bpm < row[0])
    article = "" if attrs.lead == "strings" else ("an " if attrs.lead[0] in "aeiou" else "a ")
    fields = dict(
        tempo=rng.choice(adjectives), tempo_adv=rng.choice(adverbs),
        genre=attrs.genre, Genre=attrs.genre.capitalize(), lead=attrs.lead, a_lead=article + attrs.lead,
        drums=" and drums" if attrs.drums else "", drums_with=" over a drum beat" if attrs.drums else " without drums",
        loud=rng.choice(_LOUD_WORDS[attrs.loudness]), mood=rng.choice(_MOOD[(attrs.mode, attrs.loudness)]),
        register=_REGISTER_WORDS[attrs.register],
    )
    text = str(rng.choice(_TEMPLATES)).format(**fields)
    return text[0].upper() + text[1:]


# ---------------------------------------------------------------------------------------------
# synthesis

_TABLE = 4096  # wavetable length, samples per period
_MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
_MINOR = np.array([0, 2, 3, 5, 7, 8, 10])


def midi_to_hz(note: np.ndarray | float) -> np.ndarray:
    """Frequency of MIDI note numbers, in Hz (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((np.asarray(note, dtype=float) - 69) / 12)


def _envelope(n: int, sr: int, attack: float, decay: float | None) -> np.ndarray:
    t = np.arange(n) / sr
    env = np.minimum(1.0, t / max(attack, 1e-3))
    if decay is not None:
        env = env * np.exp(-t / decay)
    release = min(n, int(0.02 * sr))
    env[n - release :] *= np.linspace(1, 0, release)
    return env


def render_note(instrument: str, freq: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One note of ``n`` samples: harmonic partials, envelope and colour of the instrument."""
    t = np.arange(n) / sr
    k = np.arange(1, 16)[:, None]
    vibrato = 0.0
    if instrument == "distorted guitar":
        amps, env = 1.0 / k, _envelope(n, sr, 0.005, 1.5)
    elif instrument == "organ":
        amps, env = np.isin(k, (1, 2, 3, 4, 6, 8)) * (1.0 / k**0.5), _envelope(n, sr, 0.01, None)
    elif instrument == "strings":
        amps, env, vibrato = 1.0 / k, _envelope(n, sr, 0.15, None), 0.004
    elif instrument == "piano":
        amps, env = np.exp(-0.5 * (k - 1)) , _envelope(n, sr, 0.003, 0.6)
    elif instrument == "flute":
        amps, env, vibrato = (k == 1) + 0.15 * (k == 2) + 0.05 * (k == 3), _envelope(n, sr, 0.08, None), 0.003
    elif instrument == "synthesizer":
        amps, env = (k % 2 == 1) / k, _envelope(n, sr, 0.01, None)
    elif instrument == "saxophone":
        amps, env, vibrato = 1.0 / k**1.3 * (1 + 0.5 * (k % 2 == 0)), _envelope(n, sr, 0.03, None), 0.005
    elif instrument == "plucked guitar":
        amps, env = 1.0 / k**1.5, _envelope(n, sr, 0.002, 0.35)
    else:
        raise ValueError(f"Unknown instrument {instrument!r}; known: {INSTRUMENTS}.")
    amps = amps * (k * freq < sr / 2 - 500)  # no aliasing
    # wavetable synthesis: one period of the harmonic mix, read at the note's (vibrato) phase
    grid = np.arange(_TABLE) / _TABLE
    table = (amps * np.sin(2 * np.pi * k * grid[None, :] + rng.uniform(0, 2 * np.pi, size=k.shape))).sum(axis=0)
    cycles = freq * (t + vibrato * np.sin(2 * np.pi * 5.5 * t) / (2 * np.pi * 5.5))
    note = table[((cycles % 1.0) * _TABLE).astype(np.int64)]
    if instrument == "distorted guitar":
        note = np.tanh(4.0 * note)
    if instrument == "flute":
        note = note + 0.05 * rng.standard_normal(n)
    return note * env


def render_drums(n: int, sr: int, tempo: float, rng: np.random.Generator) -> np.ndarray:
    """A four-on-the-floor kit: kick on beats 1 and 3, snare on 2 and 4, hi-hat on eighths."""
    out = np.zeros(n)
    beat = 60.0 / tempo
    hit = int(0.25 * sr)
    t = np.arange(hit) / sr
    kick = np.sin(2 * np.pi * (50 + 100 * np.exp(-t / 0.03)) * t) * np.exp(-t / 0.12)
    snare = rng.standard_normal(hit) * np.exp(-t / 0.06) * 0.6
    hat = np.diff(rng.standard_normal(hit + 1)) * np.exp(-t / 0.015) * 0.25
    for i, start in enumerate(np.arange(0, n / sr, beat / 2)):
        s = int(start * sr)
        e = min(n, s + hit)
        out[s:e] += hat[: e - s]
        if i % 2 == 0:
            out[s:e] += (kick if (i // 2) % 2 == 0 else snare)[: e - s]
    return out


def render_clip(attrs: ClipAttributes, duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Render a clip: melody, bass, optional chords and drums, at the clip's loudness.

    Returns
    -------
    ndarray, shape (round(duration * sr),)
        float32, peak below 1.
    """
    n = int(round(duration * sr))
    beat = 60.0 / attrs.tempo_bpm
    scale = _MINOR if attrs.mode == "minor" else _MAJOR
    music = np.zeros(n)
    # melody: a random walk on the scale, one or two notes per beat
    degree, t = 7, 0.0
    while t < duration:
        length = beat * rng.choice([0.5, 1.0, 1.0, 2.0])
        degree = int(np.clip(degree + rng.integers(-2, 3), 0, 13))
        note = attrs.root_midi + 12 * (degree // 7) + scale[degree % 7]
        s, e = int(t * sr), min(n, int((t + length) * sr))
        music[s:e] += render_note(attrs.lead, float(midi_to_hz(note)), e - s, sr, rng)
        t += length
    # harmony: a chord progression, one chord per bar (4 beats)
    progression = [0, 5, 3, 4] if attrs.mode == "major" else [0, 5, 2, 4]
    for bar, start in enumerate(np.arange(0, duration, 4 * beat)):
        s, e = int(start * sr), min(n, int((start + 4 * beat) * sr))
        root = attrs.root_midi - 12 + scale[progression[bar % 4]]
        music[s:e] += 0.6 * render_note("plucked guitar" if attrs.genre == "folk" else "organ",
                                        float(midi_to_hz(root - 12)), e - s, sr, rng)
        if STYLES[attrs.genre].chords:
            for third in (0, 2, 4):
                d = progression[bar % 4] + third
                pitch = attrs.root_midi + 12 * (d // 7) + scale[d % 7]
                music[s:e] += 0.15 * render_note("strings", float(midi_to_hz(pitch)), e - s, sr, rng)
    music /= np.abs(music).max() + 1e-9
    if attrs.drums:
        music = 0.7 * music + 0.5 * render_drums(n, sr, attrs.tempo_bpm, rng)
    music = music / (np.sqrt(np.mean(music**2)) + 1e-9)  # unit RMS, then the clip's loudness
    music = music * 10 ** (LOUDNESS_DB[attrs.loudness] / 20)
    return np.clip(music, -0.99, 0.99).astype(np.float32)


def synthesize_clips(n_clips: int, duration: float = 15.0, sample_rate: int = 16000, seed: int = 0) -> ClipSet:
    """A balanced set of synthetic clips over the styles, with captions and attribute labels.

    Parameters
    ----------
    n_clips : int
        Number of clips; styles are cycled so genres stay balanced.
    duration : float
        Clip length, in seconds.
    sample_rate : int
        In Hz.
    seed : int
        Seed of every random draw (attributes, notes, captions).

    Returns
    -------
    ClipSet
        ``table`` columns: ``caption`` and every :class:`ClipAttributes` field.
    """
    rng = np.random.default_rng(seed)
    rows, audio = {}, {}
    for i in range(n_clips):
        genre = GENRES[i % len(GENRES)]
        attrs = draw_attributes(genre, rng)
        clip_id = f"{genre}.{i:05d}"
        audio[clip_id] = render_clip(attrs, duration, sample_rate, rng)
        rows[clip_id] = {"caption": caption(attrs, rng), **asdict(attrs)}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "clip_id"
    return ClipSet(table=table, audio=audio, sample_rate=sample_rate)
