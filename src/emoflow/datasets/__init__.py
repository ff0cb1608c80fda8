"""Dataset adapters: one per corpus, each turning a dataset folder into clip records.

``scan_dataset(config["dataset"])`` picks the adapter named by ``dataset.adapter`` and
returns the clips (sorted by clip id) and the scan failures (sorted by clip id, kind).
A clip id is the root-relative POSIX path without its media extension, in Unicode NFC.
"""
