// Choosing and creating a compute backend.
#include "backend/backend.h"
#include "common/error.h"
#ifdef DENDRO_HAVE_CUDA
#include "cuda_backend.h"
#endif

namespace dendro {

#ifdef DENDRO_HAVE_CUDA
bool cuda_available() { return cuda_device_count() > 0; }

std::unique_ptr<Backend> make_backend(DeviceKind kind, const Model& model, const BackendOptions& options) {
    if (kind == DeviceKind::Auto) kind = cuda_available() && cuda_supports(model) ? DeviceKind::Cuda : DeviceKind::Cpu;
    if (kind == DeviceKind::Cuda) return make_cuda_backend(model, options);
    return make_cpu_backend(model, options);
}
#else
bool cuda_available() { return false; }

std::unique_ptr<Backend> make_backend(DeviceKind kind, const Model& model, const BackendOptions& options) {
    if (kind == DeviceKind::Cuda) fail("this build has no CUDA backend; use --device cpu");
    return make_cpu_backend(model, options);
}
#endif

DeviceKind parse_device(const std::string& text) {
    if (text == "cpu") return DeviceKind::Cpu;
    if (text == "cuda") return DeviceKind::Cuda;
    if (text == "auto") return DeviceKind::Auto;
    fail("unknown device '", text, "': expected auto, cpu or cuda");
}

}  // namespace dendro
