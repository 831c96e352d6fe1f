package procfs

import (
	"os"
	"path/filepath"
	"strings"
)

// Free page reporting, as a guest has it: the virtio balloon device (id 5)
// offers VIRTIO_BALLOON_F_REPORTING (feature bit 5,
// include/uapi/linux/virtio_balloon.h), and its driver then hands free
// pages back to the hypervisor, which faults them in again at their next
// first touch. sysfs lists a device's negotiated features as one '0' or
// '1' per bit, bit 0 first.
const (
	virtioIDBalloon       = "0x0005"
	balloonFeatureReports = 5
)

// Page reporting states.
const (
	PageReportingOn      = "on"
	PageReportingOff     = "off"     // no balloon reports free pages (or not a guest)
	PageReportingUnknown = "unknown" // sysfs could not be read
)

// FreePageReporting says whether a virtio balloon reports free pages to
// the hypervisor, from the virtio devices under root (/sys/bus/virtio/devices).
func FreePageReporting(root string) string {
	ents, err := os.ReadDir(root)
	switch {
	case os.IsNotExist(err):
		return PageReportingOff // no virtio bus: no balloon to report to
	case err != nil:
		return PageReportingUnknown
	}
	for _, e := range ents {
		id, err := os.ReadFile(filepath.Join(root, e.Name(), "device"))
		if err != nil || strings.TrimSpace(string(id)) != virtioIDBalloon {
			continue
		}
		f, err := os.ReadFile(filepath.Join(root, e.Name(), "features"))
		if err != nil {
			return PageReportingUnknown
		}
		if bits := strings.TrimSpace(string(f)); len(bits) > balloonFeatureReports && bits[balloonFeatureReports] == '1' {
			return PageReportingOn
		}
	}
	return PageReportingOff
}
