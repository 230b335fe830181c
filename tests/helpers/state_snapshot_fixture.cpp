#include "state_snapshot_fixture.h"

#include <cstring>
#include <random>

namespace dendro::test {

ModelHparams tiny_state_hparams() {
    ModelHparams hp;
    hp.n_vocab = 8;
    hp.d_model = 4;
    hp.n_layer = 2;
    hp.d_conv = 4;
    hp.d_inner = 4;
    hp.d_state = 2;
    hp.dt_rank = 1;
    return hp;
}

ModelHparams tiny_mamba2_state_hparams() {
    ModelHparams hp;
    hp.arch = Architecture::Mamba2;
    hp.n_vocab = 8;
    hp.d_model = 4;
    hp.n_layer = 2;
    hp.d_conv = 3;
    hp.d_inner = 8;
    hp.d_state = 3;
    hp.n_head = 4;
    hp.head_dim = 2;
    hp.n_group = 2;
    return hp;
}

StateSnapshot random_snapshot(const ModelHparams& hp, const std::vector<int32_t>& tokens, uint64_t seed) {
    std::mt19937_64 rng(seed * 1'000'003 + tokens.size());
    std::normal_distribution<float> value(0.0f, 1.0f);
    StateSnapshot snapshot;
    snapshot.state = SequenceState::zeros(hp);
    for (float& x : snapshot.state.conv) x = value(rng);
    for (float& x : snapshot.state.ssm) x = value(rng);
    snapshot.tokens = tokens;
    snapshot.last_logits.resize(static_cast<size_t>(hp.n_vocab));
    for (float& x : snapshot.last_logits) x = value(rng);
    return snapshot;
}

std::vector<int32_t> random_tokens(size_t count, int64_t n_vocab, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(n_vocab - 1));
    std::vector<int32_t> tokens(count);
    for (int32_t& t : tokens) t = id(rng);
    return tokens;
}

namespace {
template <typename T>
bool same_bytes(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}
}  // namespace

bool same_bits(const StateSnapshot& a, const StateSnapshot& b) {
    const SequenceState &s = a.state, &t = b.state;
    return s.shape == t.shape &&
           same_bytes(s.conv, t.conv) && same_bytes(s.ssm, t.ssm) && a.tokens == b.tokens &&
           same_bytes(a.last_logits, b.last_logits);
}

}  // namespace dendro::test
