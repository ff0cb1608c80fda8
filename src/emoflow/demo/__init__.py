"""A deterministic demo corpus in the RAVDESS layout: real face photos, animated, with a voice.

Every clip is a short mp4 (H.264 yuv420p + AAC, 25 fps, 3.2 s) named the RAVDESS way
``01-01-EE-II-SS-RR-AA.mp4`` and stored under ``Actor_AA/`` as in the real corpus (RAVDESS
modality 01 is full audio-video; 02 would mean video-only, 03 audio-only).

* Faces are the real photographs that ship inside installed packages (scikit-image's
  ``astronaut`` and matplotlib's ``grace_hopper``). Each "actor" is one of them with its own
  colour, brightness, scale, crop offset, roll and mirror flip.
* Each emotion is a smooth displacement field around landmarks of the photo (mouth corners up for
  happy, down for sad, brows lowered and pinched for angry, none for neutral), plus a head-motion
  pattern (angry: fast shake; sad: slow droop; happy: bouncy nod; neutral: nearly still). The
  lower lip opens with the voice's syllables.
* The voice is a harmonic stack with formant filters and a syllable envelope: happy is high,
  wide-ranging and fast; sad is low, flat, slow and quiet; angry is loud, bright and fast; neutral
  is mid and flat. Each actor has its own base pitch and formant scale; each repetition its own
  jitter; a little noise is added.

The content of a clip depends only on ``(seed, file name)``, so a corpus of N clips is a prefix
of a larger one. With the same versions of numpy, scipy, Pillow, ffmpeg and x264 the files are
byte-identical from run to run (``-threads 1``, bitexact flags, no metadata).

Modules: :mod:`.clips` (names, codes, seeds), :mod:`.actors` (faces from bundled photos),
:mod:`.voice` (speech synthesis), :mod:`.animation` (expressions and head motion),
:mod:`.corpus` (encoding and :func:`~emoflow.demo.corpus.make_demo_corpus`).
"""
