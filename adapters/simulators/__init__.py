"""Simulators of counterparts that have no public server to test against; labelled as simulators everywhere."""
