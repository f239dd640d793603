// Compiled with the agent's Add-Type C# by tests/unit/agent/test_native_csharp.py and run with Mono on
// x64: prints each struct's marshalled size, each P/Invoke's native shape, and the public surface.
using System;
using System.Linq;
using System.Reflection;
using System.Runtime.InteropServices;

public static class NativeProbe {
    static int Size(Type type, object[] marshalAs) {
        if (type.IsByRef || type.IsArray || type == typeof(IntPtr) || type == typeof(UIntPtr) || type == typeof(string)) return IntPtr.Size;
        if (type == typeof(bool)) {
            var a = marshalAs.OfType<MarshalAsAttribute>().FirstOrDefault();
            return a != null && (a.Value == UnmanagedType.U1 || a.Value == UnmanagedType.I1) ? 1 : 4;
        }
        if (type == typeof(void)) return 0;
        return Marshal.SizeOf(type);
    }

    public static int Main() {
        var assembly = typeof(FleetLockdown.Lsa).Assembly;
        const BindingFlags all = BindingFlags.Static | BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly;
        foreach (var type in assembly.GetTypes().Where(t => t.Namespace == "FleetLockdown").OrderBy(t => t.FullName)) {
            if (type.IsValueType && !type.IsEnum) Console.WriteLine("S\t" + type.FullName + "\t" + Marshal.SizeOf(type));
            foreach (var method in type.GetMethods(all).OrderBy(m => m.Name)) {
                var import = method.GetCustomAttributes(typeof(DllImportAttribute), false).OfType<DllImportAttribute>().FirstOrDefault();
                if (import != null) {
                    var sizes = method.GetParameters().Select(p => Size(p.ParameterType, p.GetCustomAttributes(typeof(MarshalAsAttribute), false)).ToString());
                    Console.WriteLine(string.Join("\t", "P", type.FullName, import.EntryPoint ?? method.Name, import.Value.ToLowerInvariant(),
                        import.CharSet.ToString(), Size(method.ReturnType, method.ReturnParameter.GetCustomAttributes(typeof(MarshalAsAttribute), false)).ToString(),
                        string.Join(",", sizes)));
                } else if (method.IsPublic && method.IsStatic && type.IsPublic) {
                    Console.WriteLine(string.Join("\t", "M", type.FullName, method.Name, string.Join(";", method.GetParameters().Select(p => p.ParameterType.FullName)), method.ReturnType.FullName));
                }
            }
        }
        return 0;
    }
}
