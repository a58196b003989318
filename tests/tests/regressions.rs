//! Swarm seeds that once found a bug, kept so the bug stays fixed.

use synap_tests::swarm::check_seed;

/// Seeds, with what each one found.
const SEEDS: &[u64] = &[];

#[test]
fn regression_seeds_pass() {
    for &seed in SEEDS {
        check_seed(seed);
    }
}
