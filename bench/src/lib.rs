//! Load harnesses live here (issue 4); the criterion benches are in `benches/`.
