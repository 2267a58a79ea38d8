//! C ABI over pasid-core. TODO(issue 5).
