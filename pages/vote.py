"""Blind voting for stakeholders: opened from a link (/vote?report=ID), it shows only the ballot."""

from tunelab.ui import vote_widgets

vote_widgets.voting_page()
