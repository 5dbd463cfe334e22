//go:build !linux

package wiringtest

import "time"

// ThreadCPU is not measured off Linux; benchmarks then report zero CPU.
func ThreadCPU() time.Duration { return 0 }
