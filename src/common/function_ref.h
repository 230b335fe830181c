// A non-owning reference to a callable: what std::function does for a callback that is only called while
// the call that received it runs, without copying the callable (and so without allocating: the thread
// pool's task and the matmul's per-chunk callback are handed over every decode step).
#pragma once

#include <memory>
#include <type_traits>
#include <utility>

namespace dendro {

template <typename Signature>
class FunctionRef;

template <typename Result, typename... Args>
class FunctionRef<Result(Args...)> {
public:
    FunctionRef() = default;
    // The callable must outlive every call through this reference. It may be const: the cast below is
    // undone before the call.
    template <typename Callable>
        requires(!std::is_same_v<std::remove_cvref_t<Callable>, FunctionRef> && std::is_invocable_r_v<Result, Callable&, Args...>)
    FunctionRef(Callable&& callable)  // NOLINT: converts implicitly, as std::function does
        : object_(const_cast<void*>(static_cast<const void*>(std::addressof(callable)))),
          call_([](void* object, Args... args) -> Result {
              return (*static_cast<std::remove_reference_t<Callable>*>(object))(std::forward<Args>(args)...);
          }) {}

    explicit operator bool() const { return call_ != nullptr; }
    Result operator()(Args... args) const { return call_(object_, std::forward<Args>(args)...); }

private:
    void* object_ = nullptr;
    Result (*call_)(void*, Args...) = nullptr;
};

}  // namespace dendro
