"""napari plugin (npe2, manifest ``napari.yaml``): calibrated reader and writer, sample data, restore and QC widgets.

Only :mod:`selfnet.api` and :mod:`selfnet.io` are called; the widget logic lives in
:mod:`selfnet.napari._logic`, which imports neither napari nor Qt. Install with ``pip install "selfnet[napari]"``.
"""
