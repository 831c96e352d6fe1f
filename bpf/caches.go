package bpf

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/c10mprobe/c10mprobe/internal/procfs"
	"github.com/c10mprobe/c10mprobe/internal/slabmodel"
)

// maxCaches matches MAX_CACHES in c10m.bpf.c.
const maxCaches = 32

// SlabDir lists slab caches and their aliases (SLUB's sysfs).
var SlabDir = "/sys/kernel/slab"

// WatchedCache is one kmem_cache as the kernel allocates from it. SLUB merges
// caches of the same size and flags into one kmem_cache (a symlink in
// /sys/kernel/slab); its name, the one /proc/slabinfo and kmem_cache->name
// show, is Name, and Merged lists every cache that shares it. Counting by
// kmem_cache pointer counts a merged group once, as /proc/slabinfo does.
type WatchedCache struct {
	Name       string   `json:"name"`
	ObjectSize uint64   `json:"object_size"`      // kmem_cache->size: /proc/slabinfo's objsize
	Requested  []string `json:"requested"`        // the watched names this covers
	Merged     []string `json:"merged,omitempty"` // every cache sharing it, when merged
}

// ResolveCaches maps requested cache names (slabmodel.Watched when none) to
// the kmem_caches that serve them, one entry per kmem_cache. Names this
// kernel lacks are skipped.
func ResolveCaches(names []string) ([]WatchedCache, error) {
	if len(names) == 0 {
		names = slabmodel.Watched
	}
	slabs, err := procfs.ReadSlabinfo()
	if err != nil {
		return nil, fmt.Errorf("reading /proc/slabinfo: %w", err)
	}
	entries, err := os.ReadDir(SlabDir)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", SlabDir, err)
	}
	// target → every name in that group
	groups := map[string][]string{}
	targetOf := map[string]string{}
	for _, e := range entries {
		t := e.Name()
		if link, err := os.Readlink(filepath.Join(SlabDir, e.Name())); err == nil {
			t = filepath.Base(link)
		}
		targetOf[e.Name()] = t
		groups[t] = append(groups[t], e.Name())
	}
	var out []WatchedCache
	index := map[string]int{}
	for _, n := range names {
		t, ok := targetOf[n]
		if !ok {
			continue
		}
		members := groups[t]
		sort.Strings(members)
		canonical := ""
		for _, m := range members {
			if _, ok := slabs[m]; ok {
				canonical = m
				break
			}
		}
		if canonical == "" {
			continue
		}
		if i, ok := index[canonical]; ok {
			out[i].Requested = append(out[i].Requested, n)
			continue
		}
		w := WatchedCache{Name: canonical, ObjectSize: slabs[canonical].ObjSize, Requested: []string{n}}
		if len(members) > 1 {
			for _, m := range members {
				if m[0] != ':' {
					w.Merged = append(w.Merged, m)
				}
			}
		}
		index[canonical] = len(out)
		out = append(out, w)
	}
	if len(out) > maxCaches {
		return nil, fmt.Errorf("%d caches to watch, at most %d", len(out), maxCaches)
	}
	return out, nil
}
