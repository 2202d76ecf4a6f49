# Rules of this stage: see DESIGN.md.
