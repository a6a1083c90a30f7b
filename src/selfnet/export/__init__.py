"""Portable models: bioimage.io packages (:mod:`.bioimageio`), the portable torch module (:mod:`.wrapper`), provenance (:mod:`.info`)."""
