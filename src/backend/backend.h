// The compute backend interface. A backend holds a model's weights where it computes (host memory for the
// CPU, device memory for CUDA) and the states of up to n_seq_max independent sequences. The CPU backend is
// the numerical reference that every other backend is checked against.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "model/model.h"
#include "cache/sequence_state.h"

namespace dendro {

// Auto: CUDA when a usable GPU is present and the CUDA backend computes the model, else the CPU.
enum class DeviceKind { Auto, Cpu, Cuda };

// Sampling settings a backend can apply on its own device (no min-p, no repetition penalty).
struct DeviceSampling {
    float temperature = 0.0f;  // 0 = greedy
    int32_t top_k = 0;         // 0 = off
    float top_p = 1.0f;        // 1 = off
    uint64_t seed = 0;
};

struct BackendOptions {
    int n_threads = 0;  // CPU threads; 0 = one per physical core (cpu_topology.h)
    int n_seq_max = 1;  // sequence slots to allocate
};

class Backend {
public:
    virtual ~Backend() = default;

    virtual std::string name() const = 0;  // "cpu", "cuda:0 (NVIDIA H100 ...)"
    virtual const ModelHparams& hparams() const = 0;
    virtual int n_seq_max() const = 0;

    // Zeroes sequence `seq`'s state (an empty past).
    virtual void reset(int seq) = 0;

    // Runs `tokens` through the model on sequence `seq`, continuing from its current state (which is
    // updated). Writes logits: the last position only (n_vocab floats), or every position
    // (tokens.size() * n_vocab, position-major) when all_logits. Prefilling a prompt gives the same state
    // and logits as decoding its tokens one by one.
    virtual void prefill(int seq, std::span<const int32_t> tokens, std::span<float> logits, bool all_logits) = 0;

    // One token for each of `seqs` (distinct slots), batched; logits is seqs.size() * n_vocab.
    virtual void decode(std::span<const int> seqs, std::span<const int32_t> tokens, std::span<float> logits) = 0;

    // Like decode(), then picks each sequence's next token on the backend's device, so that only token ids
    // reach the host. Returns false, doing nothing, when the backend has no on-device sampling: callers then
    // use decode() and a Sampler. A slot's random stream restarts at reset().
    virtual bool decode_sample(std::span<const int> /*seqs*/, std::span<const int32_t> /*tokens*/,
                               const DeviceSampling& /*sampling*/, std::span<int32_t> /*next_tokens*/) {
        return false;
    }

    // Copies a sequence's state out to / in from the host, and forks one slot into another on the backend.
    virtual void read_state(int seq, SequenceState& out) const = 0;
    virtual void write_state(int seq, const SequenceState& in) = 0;
    virtual void copy_state(int src, int dst) = 0;

    // Prefill calls on a sequence split after a multiple of this many tokens give the bits of one call (1:
    // any split). The CPU's Mamba-2 prefill runs SSD chunks counted from each call's first token, so only
    // whole chunks keep the bits; the prefix cache places its checkpoints accordingly.
    virtual int64_t exact_prefill_split() const { return 1; }

    // Bytes of weights one decode step streams (for achieved-bandwidth reporting).
    virtual uint64_t weight_bytes_per_token() const = 0;
    // Memory the backend holds for weights and states on its device, in bytes.
    virtual uint64_t device_memory_bytes() const = 0;
};

// A checkpoint interval (tokens; 0 = none) rounded up to a multiple of backend.exact_prefill_split(), so that
// prefilling in pieces that end on checkpoints keeps the bits of one prefill.
inline int64_t exact_checkpoint_interval(const Backend& backend, int64_t every) {
    const int64_t split = backend.exact_prefill_split();
    return (every + split - 1) / split * split;
}

std::unique_ptr<Backend> make_cpu_backend(const Model& model, const BackendOptions& options);

// Whether this build has the CUDA backend and a usable GPU is present.
bool cuda_available();
// CPU or CUDA; throws dendro::Error when CUDA is asked for and unavailable or cannot compute the model.
std::unique_ptr<Backend> make_backend(DeviceKind kind, const Model& model, const BackendOptions& options);
// "auto", "cpu" or "cuda". Throws on anything else.
DeviceKind parse_device(const std::string& text);

}  // namespace dendro
