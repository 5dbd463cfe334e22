// Package crosscheck holds the test that keeps the twin honest: the same
// Job submitted in the simulator and against a real API server (envtest)
// must yield the same set of objects with the same owner references.
package crosscheck
