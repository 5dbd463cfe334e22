// Package scale measures the twin at scale: a 10,000-PE Job submitted
// through the platform's real reconcilers on a 1,000-node simulated cluster.
package scale
