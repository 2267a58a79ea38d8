//! VT-d virtual command (VCMD) emulation. TODO(issue 3).
