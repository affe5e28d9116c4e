package backup

import (
	"errors"
	"testing"
)

// FuzzDecrypt feeds arbitrary files to the decoder: it must answer with one
// of its errors or a valid bundle, never panic or run away.
func FuzzDecrypt(f *testing.F) {
	good, err := Encrypt(testBundle(f), pass, testWork)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:60])
	f.Add([]byte(ageMagic + "-> scrypt AAAA 30\n"))
	f.Add([]byte("[Interface]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// A low ceiling keeps each try fast; the parsing is the same.
		b, err := decrypt(data, pass, testWork)
		if err == nil {
			if b.Validate() != nil {
				t.Fatal("accepted an invalid bundle")
			}
			return
		}
		if !errors.Is(err, ErrWrongPassphrase) && !errors.Is(err, ErrNotBackup) && !errors.Is(err, ErrDamaged) && !errors.Is(err, ErrNewer) {
			t.Fatalf("unclassified error: %v", err)
		}
	})
}

// FuzzParse feeds arbitrary decrypted content to the bundle parser.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"format":"booture-backup","version":1,"files":{}}`))
	f.Add([]byte(`{"format":"booture-backup","version":1,"files":{"../x":"eA=="}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Parse(data)
		if err != nil {
			return
		}
		for name := range b.Files {
			if CheckPath(name) != nil {
				t.Fatalf("accepted file %q", name)
			}
		}
	})
}
