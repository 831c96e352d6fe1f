// Package phase names the stages of a run. The runner moves through them,
// the recorder tags its samples and CPU stacks with them, and the analysis
// reads them back: one set of names, spelled once.
package phase

// Phase is a stage of a run, as summary.json and the exports spell it.
type Phase string

const (
	Idle     Phase = "idle"     // the workers up, nothing opened
	Connect  Phase = "connect"  // opening
	Exchange Phase = "exchange" // the numbered message on every connection
	Hold     Phase = "hold"     // --hold, or a dialer until its server closes
	Close    Phase = "close"    // closing
	// Census is the pause where the slab census is taken (--kmem census).
	Census Phase = "census"
	// Between is what CPU stacks sampled outside every phase are tagged.
	Between Phase = "between"
)
