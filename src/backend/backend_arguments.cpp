#include "backend/backend_arguments.h"

#include "common/error.h"

namespace dendro {

void check_sequence_slot(int seq, int n_seq_max, const char* operation) {
    if (seq < 0 || seq >= n_seq_max) {
        fail(operation, ": sequence slot ", seq, " does not exist (the backend has ", n_seq_max, " slots)");
    }
}

void check_token_ids(std::span<const int32_t> tokens, int64_t n_vocab) {
    for (int32_t token : tokens) {
        if (token < 0 || token >= n_vocab) {
            fail("token id ", token, " is outside the model's vocabulary of ", n_vocab, " tokens");
        }
    }
}

void check_logits_room(size_t logits_size, size_t needed, const char* operation) {
    if (logits_size < needed) fail(operation, ": logits buffer holds ", logits_size, " floats, needs ", needed);
}

void check_prefill_arguments(const ModelHparams& hp, int n_seq_max, int seq, std::span<const int32_t> tokens,
                             size_t logits_size, bool all_logits) {
    check_sequence_slot(seq, n_seq_max, "prefill");
    if (tokens.empty()) fail("prefill: no tokens given");
    check_token_ids(tokens, hp.n_vocab);
    const size_t rows = all_logits ? tokens.size() : 1;
    check_logits_room(logits_size, rows * static_cast<size_t>(hp.n_vocab), "prefill");
}

void check_batch_arguments(const ModelHparams& hp, int n_seq_max, std::span<const int> seqs,
                           std::span<const int32_t> tokens, const char* operation) {
    if (seqs.size() != tokens.size()) fail(operation, ": ", seqs.size(), " sequences but ", tokens.size(), " tokens");
    for (size_t i = 0; i < seqs.size(); ++i) {
        check_sequence_slot(seqs[i], n_seq_max, operation);
        for (size_t j = 0; j < i; ++j) {
            if (seqs[j] == seqs[i]) fail(operation, ": sequence slot ", seqs[i], " appears twice in one batch");
        }
    }
    check_token_ids(tokens, hp.n_vocab);
}

void check_state_fits(const ModelHparams& hp, const SequenceState& state, const char* operation) {
    if (!state.matches(hp)) {
        fail(operation, ": the state (", state.shape.text(), ") does not fit this model (", StateShape::of(hp).text(),
             ")");
    }
}

}  // namespace dendro
