"""Image I/O, one home: reading radiographs (JPEG, PNG, DICOM), the 16-bit PNG codec of caches and
releases, and fitting images to a square size.

    from synthfair.images.readers import read_image     # any source file -> Decoded (float32 in [0, 1])
    from synthfair.images.png16 import encode_png16, decode_png16
    from synthfair.images.resize import fit_image

Each module imports only what it needs (pydicom only when a DICOM is read), so this package stays light.
"""
