"""Operator tools for a deployment (not shipped in the app bundle): PKI, compose, processes."""
