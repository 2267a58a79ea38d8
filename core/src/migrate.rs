//! Live migration of a guest's PASID state. TODO(issue 4).
