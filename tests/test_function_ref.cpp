// FunctionRef: calls the callable it refers to (not a copy of it), const callables and results too; an
// empty one is false.
#include "common/function_ref.h"

#include <gtest/gtest.h>

namespace dendro {
namespace {

TEST(FunctionRef, CallsTheReferencedCallableNotACopy) {
    int calls = 0;
    auto count = [&calls](int n) { calls += n; };
    const FunctionRef<void(int)> ref = count;
    ref(2);
    ref(3);
    EXPECT_EQ(calls, 5);

    struct Counter {
        int seen = 0;
        int operator()(int n) { return seen += n; }
    } counter;
    const FunctionRef<int(int)> counted = counter;
    EXPECT_EQ(counted(4), 4);
    EXPECT_EQ(counted(1), 5);
    EXPECT_EQ(counter.seen, 5);  // the state of the object itself changed

    const auto twice = [](int n) { return 2 * n; };
    EXPECT_EQ(FunctionRef<int(int)>(twice)(21), 42);
}

TEST(FunctionRef, DefaultIsEmptyAndCopiesReferToTheSameCallable) {
    EXPECT_FALSE(FunctionRef<void()>());
    int calls = 0;
    auto bump = [&calls] { ++calls; };
    const FunctionRef<void()> first = bump;
    const FunctionRef<void()> second = first;
    EXPECT_TRUE(second);
    second();
    first();
    EXPECT_EQ(calls, 2);
}

}  // namespace
}  // namespace dendro
